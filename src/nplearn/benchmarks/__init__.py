"""Benchmark data generators with exact densities."""

from .exp1d import PUBLISHED, SIGNALS, Exp1D

__all__ = ["PUBLISHED", "SIGNALS", "Exp1D"]
