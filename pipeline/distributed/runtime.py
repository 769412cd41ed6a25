"""Starting and stopping Ray the same way on a laptop and on a cluster."""

from __future__ import annotations

import logging
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from pipeline.errors import ClusterUnreachableError

log = logging.getLogger(__name__)
# How the app's local Ray runs its workers. No idle task workers booted when a driver connects: the
# pipeline runs actors only, which get workers of their own, so the idle ones are start-up cost (an
# interpreter and imports each). Workers at the driver's priority: Ray starts them at nice 15, which
# on a machine that is also running other jobs leaves them ~3% of a core each (measured: start-up
# and first product 20-30x slower beside two CPU-bound processes), while they are the job's work.
LOCAL_SYSTEM_CONFIG = {
    "prestart_worker_first_driver": False,
    "enable_worker_prestart": False,
    "worker_niceness": 0,
}
# A sweep in one process (a Hydra multirun) keeps the local Ray it started between its jobs: each
# start costs ~8 CPU-seconds in 5 processes. ``_kept`` is what the kept instance was started with
# (num_cpus, num_gpus), or None where no instance is kept.
_keep_local = False
_kept: tuple[int | None, int | None] | None = None


def keep_local_ray() -> None:
    """Keep the local Ray running after ``release_ray`` for the next job (a sweep).

    Keep the local Ray started by ``init_ray`` running after ``release_ray`` for the next job in
    this process that asks for the same resources (a sweep); Ray's exit hook stops it with the
    process.
    """
    global _keep_local
    _keep_local = True


@contextmanager
def sharing_local_ray() -> Iterator[None]:
    """The jobs run in the body share one local Ray (``keep_local_ray``), stopped at its end.

    Unless a sweep around it keeps it for its next job.
    """
    global _keep_local, _kept
    kept_before = _keep_local
    _keep_local = True
    try:
        yield
    finally:
        _keep_local = kept_before
        if not kept_before and _kept is not None:
            ray.shutdown()
            _kept = None


def release_ray() -> None:
    """End what ``init_ray`` started or joined.

    Disconnect and stop a local instance, unless it is kept for the next job of a sweep
    (``keep_local_ray``).
    """
    if _kept is None:
        ray.shutdown()


def init_ray(
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    address: str | None = None,
    temp_dir: str | None = None,
    connect_timeout_s: float = 60.0,
) -> bool:
    """Connect to the cluster at ``address``, else start a local Ray.

    Connect to the cluster at ``address``, else start a local Ray with ``num_cpus``/``num_gpus`` and
    its session files under ``temp_dir`` (default: a fresh directory under the system temp dir,
    never the home directory), ignoring $RAY_ADDRESS. Returns True if this call started or joined
    Ray (then the caller should shut it down). RAY_AUTH_MODE defaults to "disabled" for a local
    instance only; set it explicitly for clusters. A cluster address that does not accept a
    connection within ``connect_timeout_s`` is an error, not an endless retry.
    """
    global _kept
    if ray.is_initialized():
        if _kept is None:
            # the caller's own Ray (a notebook's, a test's): used as it is, left running
            return False
        if not address and _kept == (num_cpus, num_gpus):
            log.info("using the local Ray instance of the previous job (num_cpus=%s)", num_cpus)
            return True
        ray.shutdown()  # the sweep's next job needs another Ray
        _kept = None
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        check_reachable(address, connect_timeout_s)
        # Ray ends a driver whose GCS is gone after this long with exit 1 and no word of why: the
        # head watch (``watching_head``, within connect_timeout_s) must act first
        os.environ.setdefault(
            "RAY_gcs_rpc_server_reconnect_timeout_s",
            str(int(max(60.0, 2 * connect_timeout_s + 10))),
        )
        with _signal_handlers_kept():
            ray.init(address=address, log_to_driver=True)
        return True
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.pop("RAY_ADDRESS", None)  # ray.init would otherwise join that cluster
    temp_dir = temp_dir or tempfile.mkdtemp(prefix="ray-hessian-")
    with _signal_handlers_kept():
        ray.init(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=False,
            _temp_dir=temp_dir,
            log_to_driver=True,
            configure_logging=False,
            _system_config=LOCAL_SYSTEM_CONFIG,
        )
    log.info(
        "started a local Ray instance (num_cpus=%s) with session files in %s", num_cpus, temp_dir
    )
    if _keep_local:
        _kept = (num_cpus, num_gpus)
    return True


@contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """Put this process's SIGTERM / SIGINT handlers back after ``ray.init``.

    Put this process's SIGTERM / SIGINT handlers back after ``ray.init``, which replaces them (a
    Python ``sys.exit`` handler, then the core worker's C++ handler that dumps and aborts), so that
    a scheduler's cancel ends the run through the app's own handler (exit 143, one line).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in kept.items():
            # None: a handler installed outside Python, which Python cannot put back
            if handler is not None:
                signal.signal(number, handler)


def gcs_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of a ``host:port`` GCS address.

    None for ``auto``, ``local`` and ``ray://`` client addresses, which are left to Ray.
    """
    host, _, port = address.rpartition(":")
    return None if "://" in address or not host or not port.isdigit() else (host, int(port))


def check_reachable(address: str, timeout_s: float) -> None:
    """Raise ClusterUnreachableError unless the GCS at ``address`` answers in time.

    Raise ClusterUnreachableError unless the GCS at ``address`` accepts a TCP connection in time.
    """
    endpoint = gcs_endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=timeout_s).close()
    except OSError as error:
        raise ClusterUnreachableError(
            f"cannot reach the Ray cluster at {address} within {timeout_s:g} s "
            f"({error.strerror or error}); check "
            "cluster.address / $RAY_ADDRESS (the head's GCS address, host:6379 by default) and "
            "that the head is running"
        ) from None
