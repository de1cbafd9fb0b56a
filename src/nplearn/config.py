"""The options of one NPLM test, validated in one place.

:class:`NPLMConfig` is what the Python API, the command line and the result JSON
share: ``NPLMConfig.from_dict(result["config"])`` reproduces a run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from .errors import InputError
from .learners.kernel import INNER_SOLVERS, RANK_TOL_FLOOR_FLOAT32, SCHEDULES
from .learners.neural import ACTIVATIONS, OPTIMIZERS
from .learners.neural import DEFAULT_EPOCHS as NN_DEFAULT_EPOCHS
from .multitest import COMBINATIONS
from .stats import is_real

__all__ = ["LEARNERS", "NPLMConfig"]

#: Learners of ``f``: the Nyström kernel logistic regression and the NPLM network.
LEARNERS = ("kernel", "neural")


@dataclass
class NPLMConfig:
    """Options of an NPLM goodness-of-fit test.

    Parameters
    ----------
    expected : float, optional
        ``N(R)``: the number of data events the reference model predicts. Default:
        the observed number of data events ``N_D`` (a shape-only test).
    n_toys : int
        Null pseudo-experiments for the calibration.
    sigma : float, optional
        Gaussian kernel width in the (standardised) feature space. Default: the
        ``sigma_percentile`` percentile of reference pairwise distances.
    sigma_percentile : float
        Percentile used when ``sigma`` is not given (90 by default).
    sigmas : list of float, optional
        Several kernel widths fitted on the same data and toys (multiple testing);
        excludes ``sigma``. The reported p-value is that of ``combine``.
    sigma_percentiles : list of float, optional
        Several widths as percentiles of reference pairwise distances (e.g.
        ``[1, 10, 50, 90, 99]``); excludes ``sigma`` and ``sigmas``.
    combine : str
        Multi-width runs: the combination reported, one of ``min-p``, ``fused-p``,
        ``product-p``, ``fused-t`` (all are computed and stored).
    temperature : float
        Temperature ``T`` of the ``fused-p`` and ``fused-t`` combinations.
    n_centers : int, optional
        Candidate Nyström centres ``M``; default ``max(1000, 2 sqrt(n))``.
    centers : {"per-fit", "shared"}
        ``"per-fit"`` (default, the published procedure): every fit draws its ``M``
        centres from its own training set. ``"shared"`` (resampled toys only): ``M``
        centres are drawn once from the reference and used by the observed fit and
        every toy; those events never become pseudo-data. Toys then reuse the
        reference's kernel features and only re-solve, which is much faster when
        the kernel work dominates (many centres, high dimension).
    lam : float
        Penalty strength (``1e-6`` by default; the 1D benchmark uses ``1e-10``).
    standardize : bool
        Standardise each feature with the reference mean and standard deviation.
    schedule : {"converged", "onestep"}
        Converged Newton (default) or the published one-step schedule.
    tol : float
        Converged schedule: bound on ``n (J - J*)``.
    max_iter : int
        Maximum Newton steps per fit.
    inner : {"auto", "direct", "cg"}
        Inner linear solver of each Newton step.
    rank_tol : float, optional
        Pivoted-Cholesky tolerance (default chosen from ``lam`` and ``dtype``).
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    dtype : {"float64", "float32"}
        Precision of the large kernel products.
    memory_budget : int, optional
        Bytes the solver may use for cached kernel features, per fit. Default: the
        device's default budget split between the toy workers, resolved once per
        calibration and used by the observed fit and every toy (recorded as
        ``provenance["execution"]["memory_budget"]``). It chooses how features are
        stored, which can move ``t`` in its last digits; give it explicitly for
        bit-identical toys across different worker counts or machines.
    workers : int, optional
        Worker processes for the toys (default: all cores on CPU; one per visible GPU
        for ``device="cuda"`` or ``"auto"`` with CUDA, 1 for ``"cuda:N"``).
    threads_per_worker : int, optional
        Torch threads per toy and for the observed fit (default 1). Toys are
        bit-identical for any number of workers at a given ``threads_per_worker``
        and ``memory_budget``; different thread counts can change results in the
        last bits (BLAS reduction order).
    seed : int
        Master seed: the observed fit and toy ``i`` draw from independent streams
        derived from ``(seed, i)``.
    min_exceed : int
        Report the toy p-value when at least this many toys reach ``t_obs``
        (default 1: whenever the toys resolve p), else the chi-square extrapolation.
    learner : {"kernel", "neural"}
        ``"kernel"`` (default): Nyström kernel logistic regression, every option
        above. ``"neural"``: the NPLM neural network with weight clipping
        (:class:`~nplearn.NeuralNetworkLearner`), set by the ``nn_*`` options; the
        kernel options (widths, centres, ``lam``, schedule) do not apply to it.
    nn_hidden : list of int, optional
        Hidden layers of the network; default 1-4-1 in 1D, d-d-d-d-1 otherwise.
    nn_activation : {"sigmoid", "tanh", "relu"}
        Hidden-layer activation.
    nn_weight_clip : float, optional
        Bound on every weight (biases are free); default 9 in 1D, 2.15 otherwise (the
        published values). Tune it so that the null chi-square dof is close to the
        number of parameters (both are in the summary).
    nn_optimizer : {"lbfgs", "adam"}
        ``"lbfgs"`` (default): L-BFGS-B on the clipped problem, until the projected
        gradient vanishes.
        ``"adam"``: the published procedure, full-batch Adam for ``nn_epochs``
        epochs with clipping after each step (slow: one pass over the events per
        epoch).
    nn_epochs : int, optional
        Adam epochs (default 50000) or the L-BFGS-B iteration cap (default 10000).
    nn_lr : float
        Adam learning rate.
    nn_tol : float
        Adam: largest change of the loss over the last 10% of the epochs for the fit
        to count as converged (``t`` moves by twice this).
    nn_n_init : int
        Trainings from independent initial weights per fit, the best kept (default 1,
        as published; see :class:`~nplearn.NeuralNetworkLearner`).
    """

    expected: float | None = None
    n_toys: int = 100
    sigma: float | None = None
    sigma_percentile: float = 90.0
    sigmas: list[float] | None = None
    sigma_percentiles: list[float] | None = None
    combine: str = "min-p"
    temperature: float = 1.0
    n_centers: int | None = None
    centers: str = "per-fit"
    lam: float = 1e-6
    standardize: bool = True
    schedule: str = "converged"
    tol: float = 1e-8
    max_iter: int = 100
    inner: str = "auto"
    rank_tol: float | None = None
    device: str = "cpu"
    dtype: str = "float64"
    memory_budget: int | None = None
    workers: int | None = None
    threads_per_worker: int | None = None
    seed: int = 0
    min_exceed: int = 1
    learner: str = "kernel"
    nn_hidden: list[int] | None = None
    nn_activation: str = "sigmoid"
    nn_weight_clip: float | None = None
    nn_optimizer: str = "lbfgs"
    nn_epochs: int | None = None
    nn_lr: float = 1e-3
    nn_tol: float = 0.05
    nn_n_init: int = 1

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of all options."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NPLMConfig:
        """Build from a mapping, refusing unknown keys with a clear message."""
        if not isinstance(d, dict):
            raise InputError(f"a config must be a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.field_names()))
        if unknown:
            raise InputError(
                f"unknown config key(s): {', '.join(unknown)}; "
                f"known keys: {', '.join(cls.field_names())}"
            )
        return cls(**d)

    def replace(self, **changes: Any) -> NPLMConfig:
        """A copy with some options changed (validated)."""
        return NPLMConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (for JSON)."""
        return asdict(self)

    @property
    def multi_width(self) -> bool:
        """True when several kernel widths are tested."""
        return bool(self.sigmas) or bool(self.sigma_percentiles)

    @property
    def neural(self) -> bool:
        """True when the learner is the neural network."""
        return self.learner == "neural"

    def nn_epochs_resolved(self) -> int:
        """``nn_epochs``, or the default of ``nn_optimizer``."""
        if self.nn_epochs is not None:
            return int(self.nn_epochs)
        return NN_DEFAULT_EPOCHS[self.nn_optimizer]

    def learner_params(self) -> dict[str, Any]:
        """Keyword arguments of the learner: :class:`~nplearn.KernelLogisticRegression`
        (no sigma/M) or, with ``learner="neural"``, :class:`~nplearn.NeuralNetworkLearner`
        (with ``"learner": "neural"``, see :func:`nplearn.learners.make_learner`)."""
        if self.neural:
            return {"learner": "neural", "hidden": self.nn_hidden,
                    "activation": self.nn_activation, "weight_clip": self.nn_weight_clip,
                    "optimizer": self.nn_optimizer, "epochs": self.nn_epochs_resolved(),
                    "lr": self.nn_lr, "tol": self.nn_tol, "n_init": self.nn_n_init,
                    "dtype": self.dtype,
                    "device": self.device}
        return {
            "lam": self.lam, "schedule": self.schedule, "tol": self.tol,
            "max_iter": self.max_iter, "inner": self.inner, "rank_tol": self.rank_tol,
            "dtype": self.dtype, "device": self.device, "memory_budget": self.memory_budget,
        }

    def validate(self) -> None:
        """Raise :class:`~nplearn.InputError` on any invalid option (numpy scalars,
        e.g. from a loop over ``np.arange``, become the Python numbers they hold)."""
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (list, tuple)):
                setattr(self, f.name, type(v)(_plain(x) for x in v))
            else:
                setattr(self, f.name, _plain(v))

        def positive(name: str, v: Any, *, integer: bool = False, allow_none: bool = False,
                     allow_zero: bool = False) -> None:
            if v is None and allow_none:
                return
            ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
            if isinstance(v, bool) or not ok_type:
                kind = "an integer" if integer else "a number"
                raise InputError(f"{name} must be {kind}, got {v!r}")
            if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
                raise InputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {v!r}")

        positive("expected", self.expected, allow_none=True)
        positive("n_toys", self.n_toys, integer=True, allow_zero=True)
        for one, several in (("sigma", "sigmas"), ("sigma_percentile", "sigma_percentiles")):
            v = getattr(self, one)
            if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iuf":
                setattr(self, one, v.item())  # a numpy scalar array is one number
            elif isinstance(v, (list, tuple, np.ndarray)):
                raise InputError(f"{one} takes one width; pass several as "
                                 f"{several}={list(getattr(self, one))!r}")
        positive("sigma", self.sigma, allow_none=True)
        positive("sigma_percentile", self.sigma_percentile)
        if self.sigma_percentile > 100:
            raise InputError(f"sigma_percentile must be <= 100, got {self.sigma_percentile}")
        for name in ("sigmas", "sigma_percentiles"):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, (tuple, np.ndarray)):  # e.g. np.linspace(...)
                v = np.asarray(v).tolist() if isinstance(v, np.ndarray) else list(v)
                setattr(self, name, v)
            if not isinstance(v, list) or not v:
                raise InputError(f"{name} must be a non-empty list of numbers, got {v!r}")
            for x in v:
                positive(name, x)
            if len(set(v)) != len(v):
                raise InputError(f"{name} lists a value twice: {v}")
        if self.sigma_percentiles and any(x > 100 for x in self.sigma_percentiles):
            raise InputError(f"sigma_percentiles must be <= 100, got {self.sigma_percentiles}")
        given = [n for n in ("sigma", "sigmas", "sigma_percentiles") if getattr(self, n)]
        if len(given) > 1:
            raise InputError(f"give only one of sigma, sigmas, sigma_percentiles (got "
                             f"{', '.join(given)})")
        if given and self.sigma_percentile != 90.0:  # it would be ignored
            raise InputError(f"sigma_percentile = {self.sigma_percentile:g} chooses the one "
                             f"default width, but {given[0]} is given too: give only one")
        if self.combine not in COMBINATIONS:
            raise InputError(f"combine must be one of {', '.join(COMBINATIONS)}, got "
                             f"{self.combine!r}")
        positive("temperature", self.temperature)
        positive("n_centers", self.n_centers, integer=True, allow_none=True)
        positive("lam", self.lam)
        positive("tol", self.tol)
        positive("max_iter", self.max_iter, integer=True)
        positive("rank_tol", self.rank_tol, allow_none=True, allow_zero=True)
        if (self.rank_tol is not None and self.dtype == "float32"
                and self.rank_tol < RANK_TOL_FLOOR_FLOAT32):
            raise InputError(f"rank_tol = {self.rank_tol!r} is below the float32 floor "
                             f"{RANK_TOL_FLOOR_FLOAT32:g} (rounding errors would dominate "
                             "the features); use dtype='float64' or the default rank_tol")
        positive("memory_budget", self.memory_budget, integer=True, allow_none=True)
        positive("workers", self.workers, integer=True, allow_none=True)
        positive("threads_per_worker", self.threads_per_worker, integer=True, allow_none=True)
        positive("min_exceed", self.min_exceed, integer=True)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.standardize, bool):
            raise InputError(f"standardize must be true or false, got {self.standardize!r}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule must be one of {', '.join(SCHEDULES)}, got "
                             f"{self.schedule!r}")
        if self.inner not in INNER_SOLVERS:
            raise InputError(f"inner must be one of {', '.join(INNER_SOLVERS)}, got "
                             f"{self.inner!r}")
        if self.centers not in ("per-fit", "shared"):
            hint = ("; the number of centres is n_centers (--centers on the command line)"
                    if is_real(self.centers) else "")
            raise InputError(f"centers must be 'per-fit' or 'shared', got {self.centers!r}"
                             + hint)
        if self.dtype not in ("float64", "float32"):
            raise InputError(f"dtype must be 'float64' or 'float32', got {self.dtype!r}")
        if not isinstance(self.device, str):
            raise InputError(f"device must be a string such as 'cpu' or 'cuda', got "
                             f"{self.device!r}")
        self._validate_neural(positive)

    def _validate_neural(self, positive: Any) -> None:
        if self.learner not in LEARNERS:
            raise InputError(f"learner must be one of {', '.join(LEARNERS)}, got "
                             f"{self.learner!r}")
        if self.nn_hidden is not None:
            if isinstance(self.nn_hidden, tuple):
                self.nn_hidden = list(self.nn_hidden)
            if not isinstance(self.nn_hidden, list) or not self.nn_hidden or any(
                    isinstance(h, bool) or not isinstance(h, int) or h < 1
                    for h in self.nn_hidden):
                raise InputError(f"nn_hidden must be a non-empty list of positive integers "
                                 f"(hidden-layer widths), got {self.nn_hidden!r}")
        if self.nn_activation not in ACTIVATIONS:
            raise InputError(f"nn_activation must be one of {', '.join(ACTIVATIONS)}, got "
                             f"{self.nn_activation!r}")
        if self.nn_optimizer not in OPTIMIZERS:
            raise InputError(f"nn_optimizer must be one of {', '.join(OPTIMIZERS)}, got "
                             f"{self.nn_optimizer!r}")
        positive("nn_weight_clip", self.nn_weight_clip, allow_none=True)
        positive("nn_epochs", self.nn_epochs, integer=True, allow_none=True)
        positive("nn_lr", self.nn_lr)
        positive("nn_tol", self.nn_tol)
        positive("nn_n_init", self.nn_n_init, integer=True)
        defaults = {f.name: f.default for f in fields(self)}
        changed = [name for name in defaults
                   if getattr(self, name) != defaults[name]]
        if not self.neural:
            nn_given = [n for n in changed if n.startswith("nn_")]
            if nn_given:
                raise InputError(f"{', '.join(nn_given)}: neural-network option(s), but the "
                                 "learner is the kernel one (set learner='neural', "
                                 "--learner neural)")
            return
        # options of the kernel learner given to the network: refuse rather than ignore
        kernel_only = [n for n in changed if n in KERNEL_ONLY_OPTIONS]
        if kernel_only:
            raise InputError(f"{', '.join(kernel_only)}: kernel-learner option(s), not used by "
                             "learner='neural' (the network is set by the nn_* options)")
        adam_only = [n for n in ("nn_lr", "nn_tol") if n in changed]
        if self.nn_optimizer == "lbfgs" and adam_only:
            raise InputError(f"{', '.join(adam_only)} apply to nn_optimizer='adam' only "
                             "(L-BFGS-B has no learning rate and stops on its own gradient "
                             "rule); drop them or use nn_optimizer='adam'")
        if self.nn_optimizer == "lbfgs" and self.dtype != "float64":
            raise InputError("dtype applies to nn_optimizer='adam' only: L-BFGS-B runs in "
                             "float64")
        if self.nn_optimizer == "lbfgs" and self.nn_activation == "relu":
            raise InputError("nn_activation 'relu' makes the loss non-smooth, which L-BFGS-B "
                             "cannot handle: use sigmoid or tanh, or nn_optimizer='adam'")


#: Options of the kernel learner (refused with ``learner="neural"`` when changed).
KERNEL_ONLY_OPTIONS = ("sigma", "sigma_percentile", "sigmas", "sigma_percentiles", "combine",
                       "temperature", "n_centers", "centers", "lam", "schedule", "tol",
                       "max_iter", "inner", "rank_tol", "memory_budget",
                       "threads_per_worker")


def _plain(v: Any) -> Any:
    """A numpy scalar as the Python number it holds (anything else unchanged)."""
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def budget_bytes(gib: float | None) -> int | None:
    """A memory budget given in GiB (``--memory-budget``) in bytes."""
    if gib is None:
        return None
    if not math.isfinite(gib) or gib <= 0:
        raise InputError(f"--memory-budget must be a positive number of GiB, got {gib:g}")
    return int(gib * 2**30)
