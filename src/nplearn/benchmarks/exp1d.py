"""The 1D exponential benchmark of the NPLM papers, with exact densities.

Reference density ``8 exp(-8 x)`` on ``x >= 0``, expected yield ``N(R) = 2000``,
reference sample ``N_R = 200 000``. Data are ``Poisson(N(R))`` reference events
plus ``Poisson(N(S))`` signal events:

========  ===============================  =======
signal    density                          N(S)
========  ===============================  =======
tail      Gaussian(0.8, 0.02)              10
bulk      Gaussian(0.2, 0.02)              90
nonres    256 x^2 exp(-8 x) (Gamma(3,1/8))  90
========  ===============================  =======

The Gaussian signals are truncated at ``x = 0`` (a correction below 1e-20 for
the settings above). Because every density is known, the ideal Neyman-Pearson
statistic ``t_NP = 2 [sum_D log(1 + N(S) p_S / (N(R) p_R)) - N(S)]`` is
available; its null tail probability is computed exactly in expectation by
reweighting signal toys with the likelihood ratio ``dP0/dP1 = exp(-t_NP/2)``
(see :meth:`Exp1D.ideal_null_sf`), so significances of 4-5 sigma need only
thousands of cheap toys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from ..errors import InputError
from ..stats import p_to_z

__all__ = ["PUBLISHED", "SIGNALS", "Exp1D"]

#: name -> (kind, location, scale, N(S)); kind "gauss" or "gamma3" (scale = 1/rate)
SIGNALS: dict[str, tuple[str, float, float, float]] = {
    "none": ("none", 0.0, 0.0, 0.0),
    "tail": ("gauss", 0.8, 0.02, 10.0),
    "bulk": ("gauss", 0.2, 0.02, 90.0),
    "nonres": ("gamma3", 0.0, 1.0 / 8.0, 90.0),
}

#: Published median Z of the kernel NPLM and of the ideal test (arXiv:2204.02317).
PUBLISHED: dict[str, dict[str, float]] = {
    "tail": {"kernel": 2.4, "ideal": 4.7},
    "bulk": {"kernel": 2.8, "ideal": 4.1},
    "nonres": {"kernel": 3.0, "ideal": 4.4},
}

RATE = 8.0


@dataclass(frozen=True)
class Exp1D:
    """Generator of the 1D exponential benchmark.

    Parameters
    ----------
    signal : str
        ``"none"``, ``"tail"``, ``"bulk"`` or ``"nonres"``.
    n_ref : int
        Reference sample size ``N_R``.
    expected : float
        Expected reference yield in the data ``N(R)``.
    n_signal : float, optional
        Override the expected signal yield ``N(S)``.
    """

    signal: str = "none"
    n_ref: int = 200_000
    expected: float = 2000.0
    n_signal: float | None = None

    def __post_init__(self) -> None:
        if self.signal not in SIGNALS:
            raise InputError(
                f"unknown signal {self.signal!r}; choose from {', '.join(SIGNALS)}"
            )
        if self.n_ref < 1 or self.expected <= 0:
            raise InputError("n_ref must be >= 1 and expected > 0")

    @property
    def signal_yield(self) -> float:
        """Expected number of signal events ``N(S)``."""
        return float(SIGNALS[self.signal][3] if self.n_signal is None else self.n_signal)

    # -- densities ------------------------------------------------------------------
    @staticmethod
    def reference_pdf(x: np.ndarray) -> np.ndarray:
        """``8 exp(-8 x)`` for ``x >= 0``."""
        x = np.asarray(x, dtype=np.float64)
        return np.where(x >= 0, RATE * np.exp(-RATE * np.clip(x, 0, None)), 0.0)

    def signal_pdf(self, x: np.ndarray) -> np.ndarray:
        """Normalised signal density (zero for ``signal="none"``)."""
        kind, loc, scale, _ = SIGNALS[self.signal]
        x = np.asarray(x, dtype=np.float64)
        if kind == "none":
            return np.zeros_like(x)
        if kind == "gauss":
            norm = 0.5 * special.erfc(-loc / (scale * math.sqrt(2.0)))  # mass above 0
            pdf = np.exp(-0.5 * ((x - loc) / scale) ** 2) / (scale * math.sqrt(2 * math.pi))
            return np.where(x >= 0, pdf / norm, 0.0)
        xc = np.clip(x, 0, None)
        return np.where(x >= 0, xc**2 * np.exp(-xc / scale) / (2.0 * scale**3), 0.0)

    def log_ratio(self, x: np.ndarray) -> np.ndarray:
        """True ``log n_1(x)/n_0(x) = log(1 + N(S) p_S / (N(R) p_R))``."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        ns = self.signal_yield
        if self.signal == "none" or ns == 0:
            return np.zeros_like(x)
        kind, loc, scale, _ = SIGNALS[self.signal]
        if kind == "gauss":
            # in logs to stay finite far in the Gaussian tails
            norm = 0.5 * special.erfc(-loc / (scale * math.sqrt(2.0)))
            log_s = (-0.5 * ((x - loc) / scale) ** 2 - math.log(scale * math.sqrt(2 * math.pi))
                     - math.log(norm))
        else:
            xc = np.clip(x, 1e-300, None)
            log_s = 2 * np.log(xc) - xc / scale - math.log(2.0 * scale**3)
        log_r = math.log(RATE) - RATE * x
        return np.logaddexp(0.0, math.log(ns) + log_s - math.log(self.expected) - log_r)

    # -- sampling ---------------------------------------------------------------------
    @staticmethod
    def sample_reference_events(rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` events from the reference density, shape ``(n, 1)``."""
        return rng.exponential(1.0 / RATE, size=(n, 1))

    def sample_signal_events(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` signal events, shape ``(n, 1)``."""
        kind, loc, scale, _ = SIGNALS[self.signal]
        if n == 0 or kind == "none":
            return np.empty((0, 1))
        if kind == "gamma3":
            return rng.gamma(3.0, scale, size=(n, 1))
        out = rng.normal(loc, scale, size=n)
        while (neg := out < 0).any():  # truncation at 0
            out[neg] = rng.normal(loc, scale, size=int(neg.sum()))
        return out.reshape(n, 1)

    def sample_data(self, rng: np.random.Generator) -> np.ndarray:
        """One data set: Poisson(N(R)) reference + Poisson(N(S)) signal events."""
        nb = int(rng.poisson(self.expected))
        ns = int(rng.poisson(self.signal_yield)) if self.signal_yield > 0 else 0
        x = np.concatenate([self.sample_reference_events(rng, nb),
                            self.sample_signal_events(rng, ns)])
        return x

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A toy for :class:`~nplearn.toys.ToyEngine`: a fresh reference and data set."""
        ref = self.sample_reference_events(rng, self.n_ref)
        return ref, self.sample_data(rng)

    # -- ideal test -------------------------------------------------------------------
    def ideal_t(self, data: np.ndarray) -> float:
        """Neyman-Pearson statistic ``2 [sum_D log(n_1/n_0) - N(S)]`` of one data set."""
        return float(2.0 * (self.log_ratio(data).sum() - self.signal_yield))

    def ideal_signal_toys(self, rng: np.random.Generator, n_toys: int) -> np.ndarray:
        """``t_NP`` of ``n_toys`` data sets drawn under the signal hypothesis."""
        out = np.empty(n_toys)
        for i in range(n_toys):
            out[i] = self.ideal_t(self.sample_data(rng))
        return out

    def ideal_null_sf(self, t: np.ndarray, t_signal_toys: np.ndarray) -> np.ndarray:
        """Null survival ``P0(t_NP >= t)`` estimated from signal toys.

        Uses ``P0(T >= t) = E1[exp(-T/2) 1{T >= t}]``, exact because
        ``exp(t_NP/2)`` is the likelihood ratio ``dP1/dP0`` of the two Poisson
        processes. Efficient exactly where signal toys lie, i.e. for the median
        significance.
        """
        ts = np.sort(np.asarray(t_signal_toys, dtype=np.float64))
        wts = np.exp(-0.5 * ts)
        tail = np.cumsum(wts[::-1])[::-1] / ts.size  # tail[i] = mean of w * 1{T >= ts[i]}
        idx = np.searchsorted(ts, np.asarray(t, dtype=np.float64), side="left")
        return np.where(idx < ts.size, tail[np.minimum(idx, ts.size - 1)], 0.0)

    def ideal_median_z(self, rng: np.random.Generator, n_toys: int = 20000) -> dict[str, float]:
        """Median significance of the ideal test, with its Monte Carlo inputs."""
        if self.signal == "none" or self.signal_yield == 0:
            raise InputError("the ideal test needs a signal")
        ts = self.ideal_signal_toys(rng, n_toys)
        t_med = float(np.median(ts))
        p = float(self.ideal_null_sf(np.array([t_med]), ts)[0])
        return {"t_median": t_med, "p": p, "z": p_to_z(p), "n_toys": n_toys}
