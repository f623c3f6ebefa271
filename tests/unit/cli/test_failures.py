"""An unexpected error is one line naming the problem and the fix, never a traceback."""

from __future__ import annotations

import errno
import sqlite3

from steadycast.cli._failures import disk_problem, internal_problem


def test_a_full_disk_is_found_anywhere_in_the_chain() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/ws/store.duckdb")
    try:
        try:
            raise full
        except OSError as exc:
            raise RuntimeError("writing the batch failed") from exc
    except RuntimeError as outer:
        problem = disk_problem(outer)
    assert problem is not None
    assert problem.startswith("no space left on device writing /ws/store.duckdb")
    assert "free some space" in problem


def test_a_full_control_database_names_the_file() -> None:
    problem = disk_problem(sqlite3.OperationalError("database or disk is full"))
    assert problem is not None and problem.startswith("the control database (control.sqlite)")


def test_other_errors_are_not_about_the_disk() -> None:
    assert disk_problem(ValueError("no space for doubt")) is None


def test_an_internal_error_is_one_short_line_with_its_notes() -> None:
    exc = KeyError("x" * 500)
    exc.add_note("while  forecasting\nseries a")
    problem = internal_problem(exc)
    assert "\n" not in problem
    assert problem.startswith("internal error: KeyError: ")
    assert "…" in problem and "(while forecasting series a)" in problem
    assert problem.endswith("run the command with --log-level DEBUG to print its traceback")
