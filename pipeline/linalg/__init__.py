"""Algorithms on any operator (see ``operator.Operator``); nothing here knows torch.nn."""

from pipeline.linalg.adaptive import adaptive_seigh
from pipeline.linalg.density import slq_density
from pipeline.linalg.lanczos import lanczos
from pipeline.linalg.operator import DenseOperator, LowRankPlusDiagonalOperator, Operator
from pipeline.linalg.power import power_iteration
from pipeline.linalg.random_matrices import random_columns
from pipeline.linalg.result import EigResult, SketchResult, SpectralDensity, TraceEstimate
from pipeline.linalg.seigh import seigh
from pipeline.linalg.sketch import sketch_eigs
from pipeline.linalg.trace import hutchinson_trace, hutchpp_trace

__all__ = [
    "DenseOperator",
    "EigResult",
    "LowRankPlusDiagonalOperator",
    "Operator",
    "SketchResult",
    "SpectralDensity",
    "TraceEstimate",
    "adaptive_seigh",
    "hutchinson_trace",
    "hutchpp_trace",
    "lanczos",
    "power_iteration",
    "random_columns",
    "seigh",
    "sketch_eigs",
    "slq_density",
]
