"""nplearn: the New Physics Learning Machine goodness-of-fit test.

Quick use::

    import nplearn
    result = nplearn.nplm_test(reference, data, n_toys=200)
    print(result.summary())

See :func:`nplm_test`, :class:`NPLMConfig` and :class:`KernelLogisticRegression`.
"""

from ._version import __version__
from .config import NPLMConfig
from .errors import InputError, MissingDependencyError, NotFittedError, NplearnError
from .learners import (
    FitInfo,
    KernelLogisticRegression,
    NeuralFitInfo,
    NeuralNetworkLearner,
    default_n_centers,
)
from .nplm import NPLMResult, nplm_test, nplm_toys
from .preprocess import Standardizer, sigma_from_percentile
from .stats import (
    Calibration,
    calibrate,
    chi2_pvalue,
    empirical_pvalue,
    fit_chi2_dof,
    nplm_statistic,
    p_to_z,
    z_to_p,
)
from .toys import ToyEngine, ToyResult, run_toys, toy_seed

__all__ = [
    "Calibration",
    "FitInfo",
    "InputError",
    "KernelLogisticRegression",
    "MissingDependencyError",
    "NPLMConfig",
    "NPLMResult",
    "NeuralFitInfo",
    "NeuralNetworkLearner",
    "NotFittedError",
    "NplearnError",
    "Standardizer",
    "ToyEngine",
    "ToyResult",
    "__version__",
    "calibrate",
    "chi2_pvalue",
    "default_n_centers",
    "empirical_pvalue",
    "fit_chi2_dof",
    "nplm_statistic",
    "nplm_test",
    "nplm_toys",
    "p_to_z",
    "run_toys",
    "sigma_from_percentile",
    "toy_seed",
    "z_to_p",
]
