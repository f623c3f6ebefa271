"""Progress of a long statement (a big file takes a while), for the command line's bars."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import duckdb

Progress = Callable[[str, int, int], None]  # (label, done, total)


@contextmanager
def tracking(
    con: duckdb.DuckDBPyConnection, progress: Progress | None, label: str
) -> Iterator[None]:
    """Report the progress of the statement running on ``con`` (a big file takes a while)."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.25):
            try:
                percent = con.query_progress()
            except duckdb.Error:
                return
            if percent >= 0:
                progress(label, int(percent), 100)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        progress(label, 100, 100)
