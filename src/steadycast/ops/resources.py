"""Resource accounting: wall time, CPU time (this process and its finished children), peak RSS."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from types import TracebackType


@dataclass(frozen=True)
class Usage:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime + children_cpu_s()


def children_cpu_s() -> float:
    """CPU of this process's finished (reaped) children and their own reaped descendants."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def peak_rss_mb() -> float:
    """Peak resident memory of this process or of its largest finished child, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


class Meter:
    """Measure a block: ``with Meter() as m: ...; m.usage``."""

    def __init__(self) -> None:
        self._wall = 0.0
        self._cpu = 0.0
        self.usage = Usage(0.0, 0.0, 0.0)

    def __enter__(self) -> Meter:
        self._wall = time.perf_counter()
        self._cpu = _cpu()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.usage = Usage(
            wall_s=time.perf_counter() - self._wall,
            cpu_s=_cpu() - self._cpu,
            peak_rss_mb=peak_rss_mb(),
        )
