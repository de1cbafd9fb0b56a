"""An independent dense float64 Newton solver for small kernel logistic problems.

Works in the eigenbasis of K_MM (numpy LAPACK), keeps eigen-directions above
``1e-14 * max eigenvalue`` and solves the weighted logistic problem with exact
Hessians and a backtracking line search until the Newton decrement is at
round-off level. Used as the ground truth for the torch solver.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def gauss(A: np.ndarray, B: np.ndarray, sigma: float) -> np.ndarray:
    d2 = ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma**2))


def dense_newton(X, y, sw, C, sigma, lam, *, one_step=False, max_iter=200, rel_eig=1e-14):
    """Return (alpha, f_train, objective) of the exact (or one-step) solution."""
    n = X.shape[0]
    Knm = gauss(X, C, sigma)
    Kmm = gauss(C, C, sigma)
    ev, U = np.linalg.eigh(Kmm)
    keep = ev > rel_eig * ev.max()
    T = U[:, keep] / np.sqrt(ev[keep])  # alpha = T beta, penalty = |beta|^2
    Phi = Knm @ T
    s = 2.0 * y - 1.0

    def J(beta):
        f = Phi @ beta
        return (sw * np.logaddexp(0.0, -s * f)).sum() / n + 0.5 * lam * beta @ beta

    beta = np.zeros(Phi.shape[1])
    for _ in range(1 if one_step else max_iter):
        f = Phi @ beta
        z = s * f
        d1 = -sw * s * expit(-z)
        d2 = sw * expit(z) * expit(-z)
        g = Phi.T @ d1 / n + lam * beta
        H = (Phi.T * d2) @ Phi / n + lam * np.eye(Phi.shape[1])
        delta = -np.linalg.solve(H, g)
        if one_step:
            beta = beta + delta
            break
        if -g @ delta * n < 1e-22:
            beta = beta + delta
            break
        step, J0 = 1.0, J(beta)
        while J(beta + step * delta) > J0 + 1e-4 * step * (g @ delta) and step > 1e-12:
            step /= 2
        beta = beta + step * delta
    alpha = T @ beta
    return alpha, Knm @ alpha, J(beta)
