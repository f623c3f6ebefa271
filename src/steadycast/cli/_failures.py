"""Unexpected errors as one line for whoever runs the command (exit code 1, never a traceback).

A full disk is the machine's problem, not a bug: it gets its own message and the fix. Anything
else is an internal error, with its traceback printed only under ``--log-level DEBUG``. Loaded
only when such an error happens.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import sys
import traceback

_FIX = (
    "free some space on the workspace's disk and run the command again "
    "(what was committed before this error is kept)"
)


def disk_problem(exc: BaseException) -> str | None:
    """A full (or failing) disk, found anywhere in an exception's chain, as one message.

    DuckDB, SQLite and the OS each say it their own way.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        problem = _disk_message(current)
        if problem is not None:
            return problem
        current = current.__cause__ or current.__context__
    return None


def _disk_message(exc: BaseException) -> str | None:
    """The message for one link of the chain, or ``None`` when it is not about the disk."""
    duckdb = sys.modules.get("duckdb")
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {exc.filename}" if exc.filename else ""
        return f"no space left on device{where} ({exc.strerror or text}); {_FIX}"
    full = "No space left on device" in text or "Disk quota exceeded" in text
    if duckdb is not None and isinstance(exc, duckdb.IOException) and full:
        return f"no space left on device ({first}); {_FIX}"
    if duckdb is not None and isinstance(exc, duckdb.OutOfMemoryException):
        # DuckDB spills to the workspace's .tmp/; with that disk full it runs out of memory.
        return (
            f"out of memory, and of disk space to spill to ({first}); {_FIX}, "
            "or raise [ingest] memory_limit"
        )
    if isinstance(exc, sqlite3.OperationalError) and text in (
        "database or disk is full",
        "disk I/O error",
    ):
        return f"the control database (control.sqlite) cannot be used: {text} (disk full?); {_FIX}"
    return None


def internal_problem(exc: Exception) -> str:
    """An unexpected error (a bug of steadycast, or of the machine) in one line.

    Its traceback is for the person debugging, not for a cron mail: printed above the line with
    ``--log-level DEBUG``, and kept in the run's record when it happened in a run.
    """
    if logging.getLogger("steadycast").isEnabledFor(logging.DEBUG):
        traceback.print_exception(exc, file=sys.stderr)
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:300] + "…"
    where = "; ".join(" ".join(n.split()) for n in getattr(exc, "__notes__", []))
    return (
        f"internal error: {type(exc).__name__}{': ' + text if text else ''}"
        + (f" ({where})" if where else "")
        + "; run the command with --log-level DEBUG to print its traceback"
    )
