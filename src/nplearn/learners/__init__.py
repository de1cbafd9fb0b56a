"""Learners of the log density ratio ``f(x) = log n_data(x) / n_ref(x)``."""

from typing import Any

from .kernel import FitInfo, KernelLogisticRegression, default_n_centers
from .neural import NeuralFitInfo, NeuralNetworkLearner

__all__ = ["FitInfo", "KernelLogisticRegression", "NeuralFitInfo", "NeuralNetworkLearner",
           "default_n_centers", "is_neural", "make_learner"]


def is_neural(params: dict[str, Any]) -> bool:
    """Whether learner parameters (:meth:`nplearn.NPLMConfig.learner_params`) are those
    of the neural network."""
    return params.get("learner") == "neural"


def make_learner(params: dict[str, Any]) -> Any:
    """A learner from its parameters: :class:`NeuralNetworkLearner` when they hold
    ``"learner": "neural"``, else :class:`KernelLogisticRegression`."""
    if is_neural(params):
        return NeuralNetworkLearner(**{k: v for k, v in params.items() if k != "learner"})
    return KernelLogisticRegression(**params)
