"""Curvature operators (Hessian, GGN, empirical Fisher) over (model, loss, data). Pure torch."""

from pipeline.curvature.base import CurvatureOperator
from pipeline.curvature.checks import NondeterminismError
from pipeline.curvature.fisher import EmpiricalFisherOperator
from pipeline.curvature.ggn import GGNOperator
from pipeline.curvature.hessian import HessianOperator
from pipeline.curvature.params import FlatView, select_parameters

CURVATURES = {"hessian": HessianOperator, "ggn": GGNOperator, "fisher": EmpiricalFisherOperator}

__all__ = [
    "CURVATURES",
    "CurvatureOperator",
    "EmpiricalFisherOperator",
    "FlatView",
    "GGNOperator",
    "HessianOperator",
    "NondeterminismError",
    "select_parameters",
]
