"""Where measurements and results live: the ``MeasurementStore`` protocol and its backends
(``MemoryStore`` in memory, the Zarr ``RunStore`` on disk), the fingerprint that ties a store to
one configuration, the lock that keeps one driver per store, and ``load_eigenpairs``."""

from pipeline.store.fingerprint import StoreMismatchError
from pipeline.store.lock import StoreLockedError
from pipeline.store.memory import MemoryStore
from pipeline.store.protocol import BlockedColumns, ColumnWriter, MeasurementStore, StoredMatrix
from pipeline.store.run_store import RunStore, ZarrBlockWriter, load_eigenpairs


def open_store(url: str) -> MeasurementStore:
    """The store at ``url``, its backend picked from the URL: ``memory://`` a fresh ``MemoryStore``
    (nothing kept after the run), anything else (a path, ``file://``, an fsspec URL) a Zarr
    ``RunStore``, locked until ``close`` (use it as a context manager)."""
    return MemoryStore() if str(url).startswith("memory://") else RunStore(url)

__all__ = ["BlockedColumns", "ColumnWriter", "MeasurementStore", "MemoryStore", "RunStore", "StoreLockedError", "StoreMismatchError",
           "StoredMatrix", "ZarrBlockWriter", "load_eigenpairs", "open_store"]
