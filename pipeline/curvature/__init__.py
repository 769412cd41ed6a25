"""Curvature operators (Hessian, GGN, empirical Fisher) over (model, loss, data). Pure torch.

``CURVATURES`` (curvature.kind -> operator class) holds every ``CurvatureOperator`` subclass with
a ``KIND`` defined in a module of this package: a new curvature is its module here and its yaml
in conf/curvature/.
"""

import sys

from pipeline.curvature.base import CurvatureOperator
from pipeline.curvature.checks import NondeterminismError
from pipeline.curvature.fisher import EmpiricalFisherOperator
from pipeline.curvature.ggn import GGNOperator
from pipeline.curvature.hessian import HessianOperator
from pipeline.curvature.params import FlatView, select_parameters
from pipeline.registry import modules_of


def discover() -> dict[str, type[CurvatureOperator]]:
    """KIND -> the CurvatureOperator subclass defining it, from every module of this package."""
    return {
        cls.KIND: cls
        for module in modules_of(sys.modules[__name__])
        for cls in vars(module).values()
        if isinstance(cls, type)
        and issubclass(cls, CurvatureOperator)
        and cls.__module__ == module.__name__
        and "KIND" in vars(cls)
    }


CURVATURES = discover()

__all__ = [
    "CURVATURES",
    "CurvatureOperator",
    "EmpiricalFisherOperator",
    "FlatView",
    "GGNOperator",
    "HessianOperator",
    "NondeterminismError",
    "discover",
    "select_parameters",
]
