"""What a run needs from its disk and what it says when the disk fails it.

The store's size against the free space before anything starts, and a write that fails for lack of
space, quota or a writable filesystem as one line naming the path, the bytes still to write and the
fix.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from pipeline.errors import InputError, OperationError

DISK_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def size_on_disk(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it does not exist)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def free_under(path: Path) -> tuple[Path, int]:
    """The nearest existing directory at or above ``path`` and the bytes free on its filesystem."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    return existing, shutil.disk_usage(existing).free


def check_store_fits(store_bytes: int, store: Path, allow_overcommit: bool) -> None:
    """Refuse to start when the store's bytes still to write exceed the free space.

    Refuse to start (InputError) when the store's bytes still to write exceed the free space under
    ``store`` (a resumed store counts what it already holds), unless ``allow_overcommit``.
    """
    still = max(0, store_bytes - size_on_disk(store))
    where, free = free_under(store)
    if still > free and not allow_overcommit:
        raise InputError(
            f"the store needs {gib(still)} more ({gib(store_bytes)} in all) but {gib(free)} is "
            f"free under {where}: "
            "free space, choose a run dir on a larger disk (hydra.run.dir), or set "
            "plan.allow_overcommit=true to "
            "start anyway (a run that fills the disk stops and resumes when rerun)"
        )


def disk_failure(
    error: OSError, store: Path | None = None, store_bytes: int = 0
) -> OperationError | None:
    """``error`` as one line when it is a disk failure; None for any other OSError.

    ``error`` as one line when it is a full disk, a quota or a read-only filesystem (with the
    store's bytes still to write where ``store`` is given); None for any other OSError.
    """
    if error.errno not in DISK_FAILURES:
        return None
    where = error.filename or store or "the run directory"
    still = (
        ""
        if store is None
        else f"; {gib(max(0, store_bytes - size_on_disk(store)))} of the store still to write"
    )
    fix = "make it writable" if error.errno == errno.EROFS else "free space or raise the quota"
    return OperationError(
        f"{os.strerror(error.errno)} writing {where}{still}; every completed block is kept: {fix} "
        "(or move "
        "the run dir to a larger disk) and rerun the same command to resume"
    )


def gib(count: float) -> str:
    """``count`` bytes in GiB (or MiB below a quarter GiB), for messages."""
    return f"{count / 2**30:.2f} GiB" if count >= 2**28 else f"{count / 2**20:.1f} MiB"
