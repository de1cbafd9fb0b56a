"""Learners of the log density ratio ``f(x) = log n_data(x) / n_ref(x)``."""

from .kernel import FitInfo, KernelLogisticRegression, default_n_centers

__all__ = ["FitInfo", "KernelLogisticRegression", "default_n_centers"]
