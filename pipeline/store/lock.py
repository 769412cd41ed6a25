"""One driver per store: a lock file naming its holder (host, pid, start time).

A lock whose holder ran on this host and is gone (killed, crashed) is stale and taken over with
a WARNING; a live holder, or one on another host (whose liveness cannot be checked from here),
makes the store refuse with a one-line reason. The holder's own process may reopen its store.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import weakref
from pathlib import Path

from pipeline.errors import InputError

log = logging.getLogger(__name__)


class StoreLockedError(InputError):
    """Another driver holds the store."""


class StoreLock:
    """Hold ``path`` (created exclusively) until ``release`` or garbage collection / exit."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        self._acquire()
        self._finalizer = weakref.finalize(self, _remove_if_ours, self.path, self.holder["pid"])

    def release(self) -> None:
        """Release the lock (idempotent)."""
        self._finalizer()

    def _acquire(self) -> None:
        for _ in range(2):
            try:
                with os.fdopen(
                    os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY), "w"
                ) as handle:
                    json.dump(self.holder, handle)
                return
            except FileExistsError:
                other = _read(self.path)
                if (
                    other.get("host") == self.holder["host"]
                    and other.get("pid") == self.holder["pid"]
                ):
                    return  # this process already holds it
                if other.get("host") == self.holder["host"] and not _alive(other.get("pid")):
                    log.warning(
                        "taking over the stale lock %s of pid %s (no longer running)",
                        self.path,
                        other.get("pid"),
                    )
                    self.path.unlink(missing_ok=True)
                    continue
                raise StoreLockedError(
                    f"the store {self.path.with_suffix('')} is in use by pid {other.get('pid')} on "
                    f"{other.get('host')} since "
                    f"{other.get('since')}: wait for that run, or if it is gone, delete {self.path}"
                ) from None
        raise StoreLockedError(
            f"cannot take the lock {self.path}: another driver keeps recreating it"
        )


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # unreadable or half-written: treated as held by an unknown process


def _alive(pid) -> bool:
    if not isinstance(pid, int):
        return True  # unknown holder: assume alive rather than break a running job's lock
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_if_ours(path: Path, pid: int) -> None:
    if _read(path).get("pid") == pid and os.getpid() == pid:
        path.unlink(missing_ok=True)
