"""Where measurements and results live.

The ``MeasurementStore`` protocol and its backends (``MemoryStore`` in memory, the Zarr ``RunStore``
on disk), the fingerprint that ties a store to one configuration, the lock that keeps one driver per
store, and ``load_eigenpairs``.

A backend is a module of this package with ``URL_SCHEME`` (``""``: plain paths and any scheme no
other backend claims) and ``open_url(url)``: ``open_store`` finds it, so a new backend is one
module.
"""

import sys

from pipeline.registry import modules_of
from pipeline.store.fingerprint import StoreMismatchError
from pipeline.store.lock import StoreLockedError
from pipeline.store.memory import MemoryStore
from pipeline.store.protocol import BlockedColumns, ColumnWriter, MeasurementStore, StoredMatrix
from pipeline.store.run_store import RunStore, ZarrBlockWriter, load_eigenpairs


def backends() -> dict[str, object]:
    """URL scheme -> ``open_url`` of every backend module of this package."""
    return {
        module.URL_SCHEME: module.open_url
        for module in modules_of(sys.modules[__name__])
        if hasattr(module, "URL_SCHEME")
    }


def open_store(url: str) -> MeasurementStore:
    """The store at ``url``, its backend picked from the URL's scheme.

    ``memory://`` a fresh ``MemoryStore`` (nothing kept after the run); a path, ``file://`` or an
    fsspec URL a Zarr ``RunStore``, locked until ``close`` (use it as a context manager).
    """
    url = str(url)
    scheme = url.partition("://")[0] if "://" in url else ""
    found = backends()
    return found.get(scheme, found[""])(url)


__all__ = [
    "BlockedColumns",
    "ColumnWriter",
    "MeasurementStore",
    "MemoryStore",
    "RunStore",
    "StoreLockedError",
    "StoreMismatchError",
    "StoredMatrix",
    "ZarrBlockWriter",
    "backends",
    "load_eigenpairs",
    "open_store",
]
