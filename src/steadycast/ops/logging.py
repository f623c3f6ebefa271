"""Logs for people (text) and for machines (JSON, one object a line), each carrying its run.

``run_context(run_id, pipeline)`` puts the run in a context variable; a filter on the handler
copies it onto every record, so a line logged anywhere inside a run (our code or a library's)
says which run it belongs to without every call passing it along. Context variables, not a
global, so two runs in two threads of one server never swap ids.

``configure_logging`` is called once by the CLI (``--log-format json``) or the server; calling it
again replaces the handler it installed rather than adding a second one.

Progress goes to the ``steadycast.progress`` logger at INFO: a stage's start and end and, for
partitioned work, done/total, rate and elapsed time (``ProgressLog``), at most one line every
``PROGRESS_EVERY_S`` seconds and always the last. On a terminal the CLI draws a progress bar
instead; without one (cron, a scheduler, a pipe) it turns this logger on, so a captured log
shows a long run moving.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from steadycast.errors import UsageError

__all__ = [
    "PROGRESS_LOGGER",
    "JsonFormatter",
    "ProgressLog",
    "RunContextFilter",
    "configure_logging",
    "current_run",
    "run_context",
    "show_progress",
]

LogFormat = Literal["text", "json"]
FORMATS: tuple[str, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s%(run_tag)s: %(message)s"

_run_id: ContextVar[str | None] = ContextVar("steadycast_run_id", default=None)
_pipeline: ContextVar[str | None] = ContextVar("steadycast_pipeline", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "run_tag"}
_OURS = "_steadycast_handler"

#: The logger of progress lines; the CLI turns it on when there is no terminal.
PROGRESS_LOGGER = "steadycast.progress"
#: At most one progress line per stage this often (seconds), besides the last.
PROGRESS_EVERY_S = 5.0

progress_log = logging.getLogger(PROGRESS_LOGGER)


def current_run() -> tuple[str | None, str | None]:
    """The (run_id, pipeline) of the run this code is working for, if any."""
    return _run_id.get(), _pipeline.get()


@contextmanager
def run_context(run_id: str, pipeline: str) -> Iterator[None]:
    """Every log line inside the block carries ``run_id`` and ``pipeline``."""
    tokens = (_run_id.set(run_id), _pipeline.set(pipeline))
    try:
        yield
    finally:
        _pipeline.reset(tokens[1])
        _run_id.reset(tokens[0])


class RunContextFilter(logging.Filter):
    """Copies the current run onto each record (unless the caller passed its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        run_id, pipeline = current_run()
        if getattr(record, "run_id", None) is None:
            record.run_id = run_id
        if getattr(record, "pipeline", None) is None:
            record.pipeline = pipeline
        tag = getattr(record, "run_id", None)
        record.run_tag = f" [{tag}]" if tag else ""
        return True


# Our field names for the record attributes python-json-logger reads.
_RENAMED = {
    "levelname": "level",
    "name": "logger",
    "exc_info": "exception",
    "stack_info": "stack",
}


class JsonFormatter(_LibraryJsonFormatter):
    """One JSON object per line: time, level, logger, message, run_id, pipeline, then extras.

    python-json-logger does the work (extras, tracebacks, serialising); this class fixes the
    field names and their order. Values JSON cannot hold are written with ``str`` so a log line
    is never lost to a serialisation error; a traceback goes in ``exception`` as one string.
    An extra never replaces one of the fixed fields.
    """

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message", "run_id", "pipeline"],
            rename_fields=_RENAMED,
            reserved_attrs=sorted(_STANDARD),
            json_default=str,
            json_ensure_ascii=False,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        found: dict[str, Any] = {}
        super().add_fields(found, record, message_dict)
        fixed = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": getattr(record, "run_id", None),
            "pipeline": getattr(record, "pipeline", None),
        }
        log_data.update(fixed)
        log_data.update((k, v) for k, v in found.items() if k not in fixed)


def configure_logging(
    format: LogFormat = "text",
    level: int | str = "INFO",
    *,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send log records to ``stream`` (stderr) in ``format``; returns the installed handler.

    The handler goes on the root logger so libraries' records are formatted alike; stdout stays
    free for ``--json`` output.
    """
    if format not in FORMATS:
        raise UsageError(f"log format {format!r} is not one of {', '.join(FORMATS)}")
    if isinstance(level, str):
        resolved = logging.getLevelNamesMapping().get(level.upper())
        if resolved is None:
            raise UsageError(
                f"log level {level!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
            )
        level = resolved
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RunContextFilter())
    formatter: logging.Formatter
    if format == "json":
        formatter = JsonFormatter()
    else:
        formatter = logging.Formatter(TEXT_FORMAT)
        formatter.converter = _utc_struct_time
    handler.setFormatter(formatter)
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def show_progress(on: bool = True) -> None:
    """Log progress lines at INFO whatever the root level (``on``), or follow the root level."""
    progress_log.setLevel(logging.INFO if on else logging.NOTSET)


class ProgressLog:
    """Progress lines for partitioned work: ``stage: done/total partitions (pct), rate/s,
    elapsed``, throttled per stage so a million-series run does not flood its log."""

    def __init__(self, every_s: float = PROGRESS_EVERY_S) -> None:
        self.every_s = every_s
        self._started: dict[str, tuple[float, int | None]] = {}
        self._last: dict[str, float] = {}

    def start(self, stage: str) -> None:
        """The stage begins now: its elapsed time and rate count from here."""
        self._started[stage] = (time.monotonic(), None)
        self._last.pop(stage, None)

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        started, before = self._started.get(stage, (now, None))
        if before is None:
            # What is done at the first report may be resumed work, not this run's rate.
            before = max(done - 1, 0)
            self._started[stage] = (started, before)
        last = self._last.get(stage)
        if done < total and last is not None and now - last < self.every_s:
            return
        if not progress_log.isEnabledFor(logging.INFO):
            return
        self._last[stage] = now
        elapsed = now - started
        rate = (done - before) / elapsed if elapsed > 0 else 0.0
        share = 100.0 * done / total if total else 100.0
        progress_log.info(
            "%s: %d/%d partitions (%.0f%%), %.2f partitions/s, elapsed %.1f s",
            stage,
            done,
            total,
            share,
            rate,
            elapsed,
            extra={
                "stage": stage,
                "done": done,
                "total": total,
                "rate_per_s": round(rate, 3),
                "elapsed_s": round(elapsed, 3),
            },
        )


def _utc_struct_time(seconds: float | None) -> Any:
    """Text logs in UTC too, like every time steadycast writes."""
    import time

    return time.gmtime(seconds)
