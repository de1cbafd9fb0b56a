"""Multivariate synthetic benchmark: a correlated Gaussian mixture with exact density.

The reference density is a mixture of three Gaussians in ``d`` dimensions with
random (seeded) means and correlated covariances; it stands in for the
DIMUON/SUSY/HIGGS samples of the kernel-NPLM paper, which cannot be downloaded
here. Used for timing (the statistic's null behaviour does not depend on what the
reference looks like).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

__all__ = ["GaussianMixture"]


@dataclass(frozen=True)
class GaussianMixture:
    """Reference model: a 3-component correlated Gaussian mixture in ``d`` dimensions.

    Parameters
    ----------
    d : int
        Dimension.
    n_ref : int
        Reference sample size of a toy.
    expected : float
        Expected data yield ``N(R)``.
    structure_seed : int
        Seed of the mixture's means and covariances (fixed per benchmark).
    """

    d: int = 5
    n_ref: int = 100_000
    expected: float = 20_000.0
    structure_seed: int = 0
    _params: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.structure_seed)
        means = rng.normal(scale=1.5, size=(3, self.d))
        covs = []
        for _ in range(3):
            A = rng.normal(size=(self.d, self.d)) / np.sqrt(self.d)
            covs.append(A @ A.T + 0.5 * np.eye(self.d))
        weights = np.array([0.5, 0.3, 0.2])
        object.__setattr__(self, "_params", (weights, means, np.array(covs)))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` events from the reference density."""
        w, mu, cov = self._params
        comp = rng.choice(3, size=n, p=w)
        out = np.empty((n, self.d))
        for k in range(3):
            idx = np.flatnonzero(comp == k)
            out[idx] = rng.multivariate_normal(mu[k], cov[k], size=idx.size, method="cholesky")
        return out

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        """Exact log density of the reference."""
        w, mu, cov = self._params
        terms = []
        for k in range(3):
            L = np.linalg.cholesky(cov[k])
            z = np.linalg.solve(L, (x - mu[k]).T)
            terms.append(np.log(w[k]) - 0.5 * (z * z).sum(0) - np.log(np.diag(L)).sum()
                         - 0.5 * self.d * np.log(2 * np.pi))
        return logsumexp(np.array(terms), axis=0)

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A null toy: a fresh reference and Poisson(N(R)) data events."""
        ref = self.sample(rng, self.n_ref)
        return ref, self.sample(rng, int(rng.poisson(self.expected)))
