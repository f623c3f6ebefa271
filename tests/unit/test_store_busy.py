"""A store held by another process: waited for while it is held, then reported with a message
that says what is going on and what to do; taken as soon as the other process lets go."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from steadycast.errors import StoreBusyError
from steadycast.storage.store import reading, writing

HOLD = (
    "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
    "print('held', flush=True); time.sleep(float(sys.argv[2]))"
)


@contextmanager
def held(path: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process with the store open for writing for ``seconds``."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            yield holder
        finally:
            holder.kill()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store.duckdb"
    with writing(path):
        pass
    return path


def test_a_store_held_too_long_is_reported_busy_after_the_wait(store: Path) -> None:
    with held(store, 30):
        started = time.monotonic()
        with (
            pytest.raises(
                StoreBusyError,
                match=r"store\.duckdb: the store is in use by another steadycast process "
                r"\(waited 1 s\); try again when it has finished",
            ),
            writing(store, wait_s=1.0),
        ):
            pass
        waited = time.monotonic() - started
    assert 1.0 <= waited < 5.0


def test_a_store_let_go_during_the_wait_is_opened(store: Path) -> None:
    with held(store, 1.0) as holder:
        started = time.monotonic()
        with reading(store, wait_s=30.0) as con:
            assert con.execute("SELECT 42").fetchall() == [(42,)]
        assert holder.poll() is not None  # it really was held until the holder exited
    assert time.monotonic() - started < 10.0
