"""A lost Ray head ends the run in one line, not a hang.

While the driver works with a cluster, a thread checks that the head's GCS still accepts
connections.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.distributed.runtime import gcs_endpoint
from pipeline.errors import OperationError

log = logging.getLogger(__name__)
POLL_S = 1.0
# of the timeout: the head is lost after this long without an answer, and the process ends this long
# later
SILENCE = 0.4


class ClusterLost(OperationError):
    """The Ray head (GCS) stopped answering in the middle of a run."""


@contextmanager
def watching_head(address: str, timeout_s: float) -> Iterator[None]:
    """While the body runs, connect to the GCS at ``host:port`` every ``POLL_S``.

    Once it has not answered for ``SILENCE * timeout_s``, raise ``ClusterLost`` in the main thread
    (through SIGUSR2's handler: Ray's blocking calls check for signals) and, if the process is still
    inside the body as long again later (a Ray call that blocks on the lost GCS without checking),
    log the line and exit 2. So the run ends within ``timeout_s`` of the loss. Other address forms
    (``ray://``, ``auto``) are not watched; nor is anything outside the main thread.
    """
    endpoint = gcs_endpoint(address)
    if endpoint is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    done = threading.Event()
    lost: list[str] = []

    def raise_lost(*_) -> None:
        raise ClusterLost(lost[0])

    def watch() -> None:
        silent_since = None
        while not done.wait(POLL_S):
            if _answers(endpoint):
                silent_since = None
                continue
            silent_since = silent_since or time.monotonic()
            if time.monotonic() - silent_since >= SILENCE * timeout_s:
                lost.append(
                    f"lost the Ray cluster: its head at {address} has not answered for "
                    f"{SILENCE * timeout_s:.0f} s "
                    "(stopped, or its node or network failed); every completed block is kept in "
                    "the store: start "
                    "the head again (or set cluster.address to another cluster) and rerun the same "
                    "command to resume"
                )
                os.kill(os.getpid(), signal.SIGUSR2)
                if not done.wait(SILENCE * timeout_s):
                    log.error("error: %s", lost[0])
                    logging.shutdown()
                    os._exit(2)
                return

    previous = signal.signal(signal.SIGUSR2, raise_lost)
    threading.Thread(target=watch, daemon=True, name="head watch").start()
    try:
        yield
    finally:
        done.set()
        signal.signal(signal.SIGUSR2, previous)


def _answers(endpoint: tuple[str, int]) -> bool:
    try:
        socket.create_connection(endpoint, timeout=POLL_S).close()
        return True
    except OSError:
        return False
