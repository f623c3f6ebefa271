"""Fault injection for the reliability tests: the one reader of ``STEADYCAST_FAILPOINT``.

Unset in production, where every check below is one dictionary lookup. Two kinds of point:

``stage:NAME`` (``fail_at``)
    The variable holds exactly one point. ``stage:forecast`` makes the process kill itself
    (SIGKILL, nothing cleaned up) as that stage starts; ``raise:stage:forecast`` raises an
    unexpected error there instead (a bug, as the run sees it).

``partition:mid-write``, ``partition:after-commit`` (``kill_once``)
    The variable holds one or more points, comma-separated. The first process of the run to
    reach a named point kills itself; a marker file makes each point fire once per run, so a
    retried task, or a re-run, passes.

An engine that runs tasks in other processes (Spark executors) forwards ``configured()``.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

__all__ = ["FAILPOINT_ENV", "configured", "fail_at", "kill_once"]

FAILPOINT_ENV = "STEADYCAST_FAILPOINT"


def configured() -> str | None:
    """The failpoints set for this process, if any."""
    return os.environ.get(FAILPOINT_ENV) or None


def fail_at(point: str) -> None:
    """Kill this process at ``point`` (the variable equals it), or raise there (it equals
    ``raise:POINT``)."""
    wanted = os.environ.get(FAILPOINT_ENV)
    if wanted == point:
        os.kill(os.getpid(), signal.SIGKILL)
    if wanted == f"raise:{point}":
        raise RuntimeError(f"fault injected at {point} ({FAILPOINT_ENV})")


def kill_once(point: str, markers: Path) -> None:
    """Kill this process at ``point`` if the variable lists it and no process of the run has
    fired it yet (a marker file in ``markers``, a directory of the run, records that)."""
    wanted = os.environ.get(FAILPOINT_ENV)
    if not wanted or point not in wanted.split(","):
        return
    marker = markers / f"failpoint-{point.replace(':', '-')}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    with contextlib.suppress(OSError):
        os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
