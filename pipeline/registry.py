"""Registries found, not listed.

Every module of a package is imported and asked for its entry, so a new solver, curvature or store
backend is one new module (and, for the first two, its yaml in the config group).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def modules_of(package: ModuleType) -> list[ModuleType]:
    """Every module of ``package`` (found on its ``__path__``), imported, in name order."""
    names = sorted(info.name for info in pkgutil.iter_modules(package.__path__))
    return [importlib.import_module(f"{package.__name__}.{name}") for name in names]
