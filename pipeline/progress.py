"""Progress a person can follow anywhere: a bar on a terminal, periodic log lines in a log file.

``progress`` flags throughout the package mean: None (default) = a tqdm bar when stderr is a
terminal, else an INFO line every ``log_interval_s`` seconds (done/total, rate, ETA) and one at the
end; True = a bar always; False = silent.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

from pipeline import tracking
from pipeline.errors import InputError

T = TypeVar("T")
log = logging.getLogger("pipeline.progress")
_settings = {"log_interval_s": 30.0}


def set_log_interval(seconds: float) -> None:
    """Seconds between progress lines off a terminal (``output.progress_interval_s``)."""
    if not seconds > 0:
        raise InputError(f"the progress interval must be positive, got {seconds}")
    _settings["log_interval_s"] = float(seconds)


def tracked(
    items: Iterable[T], total: int | None, desc: str, unit: str = "it", progress: bool | None = None
) -> Iterator[T]:
    """Iterate ``items`` while reporting progress as ``progress`` says (module docstring)."""
    if progress is False:
        yield from items
    elif progress or sys.stderr.isatty():
        yield from _tracked_scalars(tqdm(items, total=total, desc=desc, unit=unit), total, desc)
    else:
        report = ProgressLog(desc, total, unit)
        for item in _tracked_scalars(items, total, desc):
            yield item
            report.advance()
        report.finish()


def _tracked_scalars(items: Iterable[T], total: int | None, desc: str) -> Iterator[T]:
    """Yield ``items`` and send the open tracker the fraction done and the rate.

    Yield ``items`` and send the open tracker (``pipeline.tracking``) the fraction done and the
    rate, at most once a second.
    """
    if not tracking.is_open():
        yield from items
        return
    start, done = time.monotonic(), 0
    for done, item in enumerate(items, 1):
        yield item
        if total:
            tracking.scalar(f"progress/{desc} fraction", done / total, step=done, every_s=1.0)
        tracking.scalar(
            f"progress/{desc} rate_per_s",
            done / max(time.monotonic() - start, 1e-9),
            step=done,
            every_s=1.0,
        )
    if total:  # the last one, whenever the one before was sent
        tracking.scalar(f"progress/{desc} fraction", done / total, step=done)


class ProgressLog:
    """Progress lines at most every ``log_interval_s`` seconds, and a closing line.

    Logs ``desc: done/total unit (pct%), rate/s, ETA`` at most every ``log_interval_s`` seconds as
    ``advance`` is called, and a closing line from ``finish``.
    """

    def __init__(self, desc: str, total: int | None, unit: str = "it"):
        self.desc, self.total, self.unit = desc, total, unit
        self.done = 0
        self.start = self.last = time.monotonic()

    def advance(self, count: int = 1) -> None:
        """Count ``count`` more done; log a line when ``log_interval_s`` has passed."""
        self.done += count
        now = time.monotonic()
        if now - self.last >= _settings["log_interval_s"]:
            self.last = now
            log.info("%s", self.line(now))

    def finish(self) -> None:
        """Log the closing line: how many were done, in how long."""
        log.info(
            "%s: %d %s done in %s",
            self.desc,
            self.done,
            self.unit,
            clock(time.monotonic() - self.start),
        )

    def line(self, now: float) -> str:
        """The progress line at time ``now``."""
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        if not self.total:
            return (
                f"{self.desc}: {self.done} {self.unit}, {rate:.3g} {self.unit}/s, "
                f"{clock(elapsed)} elapsed"
            )
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        return (
            f"{self.desc}: {self.done}/{self.total} {self.unit} "
            f"({100 * self.done / self.total:.0f}%), "
            f"{rate:.3g} {self.unit}/s, ETA {clock(eta)}"
        )


def clock(seconds: float) -> str:
    """h:mm:ss (or ? when unknown)."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
