"""Zarr run store: measurements, results, resume manifest."""

from pipeline.linalg.measurements import StoreMismatchError
from pipeline.store.lock import StoreLockedError
from pipeline.store.run_store import RunStore, ZarrBlockWriter, load_eigenpairs

__all__ = ["RunStore", "StoreLockedError", "StoreMismatchError", "ZarrBlockWriter", "load_eigenpairs"]
