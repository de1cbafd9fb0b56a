"""An exact dense float64 solver for small kernel logistic problems (validation only).

Independent of the production solver: numpy/LAPACK only, the eigenbasis of
``K_MM`` (directions above ``rel_eig`` times the largest eigenvalue), exact
Hessians and a backtracking line search until the Newton decrement reaches
round-off. Memory is ``O(n M)``: use it on problems up to a few 1e5 x 3e3.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

__all__ = ["dense_newton", "gaussian_kernel_np"]


def gaussian_kernel_np(A: np.ndarray, B: np.ndarray, sigma: float) -> np.ndarray:
    """Dense Gaussian kernel matrix in float64 from exact coordinate differences."""
    out = np.empty((A.shape[0], B.shape[0]))
    rows = max(1, (1 << 23) // max(1, B.shape[0] * A.shape[1]))
    for s in range(0, A.shape[0], rows):
        diff = A[s : s + rows, None, :] - B[None, :, :]
        out[s : s + rows] = np.exp(-np.einsum("ijk,ijk->ij", diff, diff) / (2.0 * sigma**2))
    return out


def dense_newton(
    X: np.ndarray,
    y: np.ndarray,
    sw: np.ndarray,
    C: np.ndarray,
    sigma: float,
    lam: float,
    *,
    one_step: bool = False,
    max_iter: int = 200,
    rel_eig: float = 1e-14,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Minimise ``(1/n) sum sw softplus(-(2y-1) f) + (lam/2) a^T K_MM a`` exactly.

    Parameters
    ----------
    X, y, sw : numpy.ndarray
        Events, labels in {0, 1}, weights.
    C : numpy.ndarray
        The ``M`` centres.
    sigma, lam : float
        Kernel width and penalty.
    one_step : bool
        Take a single undamped Newton step from zero instead.

    Returns
    -------
    alpha, f, objective
        Coefficients on ``C``, ``f`` on ``X`` and the final objective.
    """
    n = X.shape[0]
    Knm = gaussian_kernel_np(X, C, sigma)
    ev, U = np.linalg.eigh(gaussian_kernel_np(C, C, sigma))
    keep = ev > rel_eig * ev.max()
    T = U[:, keep] / np.sqrt(ev[keep])  # alpha = T beta, a^T K a = |beta|^2
    Phi = Knm @ T
    del Knm
    s = 2.0 * y - 1.0

    def objective(beta: np.ndarray) -> float:
        return float((sw * np.logaddexp(0.0, -s * (Phi @ beta))).sum() / n
                     + 0.5 * lam * beta @ beta)

    beta = np.zeros(Phi.shape[1])
    for _ in range(1 if one_step else max_iter):
        z = s * (Phi @ beta)
        g = Phi.T @ (-sw * s * expit(-z)) / n + lam * beta
        H = (Phi.T * (sw * expit(z) * expit(-z))) @ Phi / n + lam * np.eye(Phi.shape[1])
        delta = -np.linalg.solve(H, g)
        if one_step or -g @ delta * n < 1e-22:
            beta = beta + delta
            break
        step, J0 = 1.0, objective(beta)
        while objective(beta + step * delta) > J0 + 1e-4 * step * (g @ delta) and step > 1e-12:
            step /= 2
        beta = beta + step * delta
    alpha = T @ beta
    return alpha, Phi @ beta, objective(beta)
