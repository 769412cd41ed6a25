"""hessian-pipeline: top eigenpairs, trace and spectral density of neural-network curvature.

Subpackages: ``curvature`` (Hessian/GGN/Fisher operators, pure torch), ``linalg`` (Krylov and
sketched algorithms on any operator), ``distributed`` (Ray workers), ``store`` (Zarr run store),
``models``, ``data``, ``analysis``; ``app`` is the Hydra entry point.
"""

__version__ = "0.1.0"
