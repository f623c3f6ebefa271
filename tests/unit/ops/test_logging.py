"""Text and JSON logs, and the run id carried by every line logged inside a run."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from steadycast.errors import UsageError
from steadycast.ops.logging import (
    ProgressLog,
    configure_logging,
    current_run,
    run_context,
    show_progress,
)


@pytest.fixture
def restore_root() -> Iterator[None]:
    """configure_logging changes the root logger; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_the_run_and_extras(restore_root: None) -> None:
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream=stream)
    log = logging.getLogger("steadycast.test")
    log.info("before")
    with run_context('meters-1"<x>', "meters"):
        log.info("forecast %s of %d", "done", 3, extra={"series": 5, "when": object()})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.debug("after")
    records = [json.loads(line) for line in lines(stream)]
    assert [r["message"] for r in records] == ["before", "forecast done of 3", "failed", "after"]
    first, inside, failed, after = records
    assert first["run_id"] is None and after["run_id"] is None
    assert inside["run_id"] == 'meters-1"<x>' and inside["pipeline"] == "meters"
    assert inside["level"] == "INFO" and inside["logger"] == "steadycast.test"
    assert inside["series"] == 5 and inside["when"].startswith("<object")
    assert inside["time"].endswith("+00:00")
    assert "ValueError: boom" in failed["exception"] and failed["run_id"] == 'meters-1"<x>'
    assert set(first) == {"time", "level", "logger", "message", "run_id", "pipeline"}


def test_json_extras_never_replace_the_fixed_fields_and_text_stays_readable(
    restore_root: None,
) -> None:
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    log = logging.getLogger("steadycast.test")
    log.info("prévision", extra={"level": "fake", "logger": "fake", "time": 0, "rows": 7})
    line = lines(stream)[0]
    assert "prévision" in line  # not \u-escaped: a person reads these too
    record = json.loads(line)
    assert list(record)[:6] == ["time", "level", "logger", "message", "run_id", "pipeline"]
    assert record["level"] == "INFO" and record["logger"] == "steadycast.test"
    assert record["time"].endswith("+00:00") and record["rows"] == 7


def test_text_lines_tag_the_run(restore_root: None) -> None:
    stream = io.StringIO()
    configure_logging("text", "info", stream=stream)
    log = logging.getLogger("steadycast.test")
    with run_context("meters-2", "meters"):
        log.warning("held by the gate")
    log.info("idle")
    log.debug("hidden")
    out = lines(stream)
    assert len(out) == 2
    assert out[0].endswith("WARNING steadycast.test [meters-2]: held by the gate")
    assert out[1].endswith("INFO    steadycast.test: idle")


def test_reconfiguring_replaces_the_handler(restore_root: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("text", stream=first)
    configure_logging("json", stream=second)
    logging.getLogger("steadycast.test").info("once")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1


def test_run_context_is_per_thread_and_restored() -> None:
    seen: dict[str, tuple[str | None, str | None]] = {}

    def other() -> None:
        seen["thread"] = current_run()

    with run_context("a-1", "a"):
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
        with run_context("b-1", "b"):
            seen["nested"] = current_run()
        seen["outer"] = current_run()
    assert seen == {"thread": (None, None), "nested": ("b-1", "b"), "outer": ("a-1", "a")}
    assert current_run() == (None, None)


def test_bad_format_or_level_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="log format 'xml' is not one of text, json"):
        configure_logging("xml")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="log level 'LOUD'"):
        configure_logging("text", "LOUD")


def test_progress_lines_are_throttled_but_the_last_always_comes(restore_root: None) -> None:
    """Thousands of partitions are a few lines, not thousands; the end is never left out."""
    stream = io.StringIO()
    configure_logging("json", "WARNING", stream=stream)
    show_progress(True)
    try:
        say = ProgressLog(every_s=60)
        say.start("forecast")
        for done in range(1, 1001):
            say("forecast", done, 1000)
    finally:
        show_progress(False)
    records = [json.loads(line) for line in lines(stream)]
    assert [(r["done"], r["total"]) for r in records] == [(1, 1000), (1000, 1000)]
    assert records[-1]["message"].startswith("forecast: 1000/1000 partitions (100%)")
    assert records[-1]["rate_per_s"] > 0 and records[-1]["logger"] == "steadycast.progress"


def test_progress_lines_follow_the_root_level_unless_turned_on(restore_root: None) -> None:
    stream = io.StringIO()
    configure_logging("text", "WARNING", stream=stream)
    ProgressLog()("forecast", 1, 2)
    assert lines(stream) == []
