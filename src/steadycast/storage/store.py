"""The embedded default store: one DuckDB file per workspace, with versioned migrations.

DuckDB lets one process write a database file, and while it holds it no other process can open
it. So connections are held only as long as one piece of work takes: ``writing()`` opens, does the
work in one transaction, and closes; a busy store is retried for a while, then reported with a
clear message. Runs read what they need at their start and let go (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import tenacity

from steadycast.errors import StoreBusyError, WorkspaceError

if TYPE_CHECKING:
    import duckdb

STORE_FILE = "store.duckdb"

# Each entry upgrades the store by one version; never edit an entry once released, append one.
MIGRATIONS: list[str] = [
    # 1: observations, quarantine and the batch ledger
    """
    CREATE TABLE observations (
        pipeline VARCHAR NOT NULL,
        unique_id VARCHAR NOT NULL,
        ds TIMESTAMP NOT NULL,
        y DOUBLE NOT NULL,
        batch_id VARCHAR NOT NULL
    );
    CREATE TABLE quarantine (
        pipeline VARCHAR NOT NULL,
        batch_id VARCHAR NOT NULL,
        file VARCHAR NOT NULL,
        line BIGINT,
        reason VARCHAR NOT NULL,
        detail VARCHAR,
        unique_id VARCHAR,
        raw VARCHAR
    );
    CREATE TABLE batches (
        pipeline VARCHAR NOT NULL,
        batch_id VARCHAR NOT NULL,
        content_sha256 VARCHAR NOT NULL,
        file VARCHAR NOT NULL,
        format VARCHAR NOT NULL,
        ingested_at TIMESTAMP NOT NULL,
        rows_read BIGINT NOT NULL,
        rows_stored BIGINT NOT NULL,
        rows_quarantined BIGINT NOT NULL,
        rows_new BIGINT NOT NULL,
        rows_corrected BIGINT NOT NULL,
        rows_unchanged BIGINT NOT NULL
    );
    """,
    # 2: history of superseded values, so a correction never erases what was there before
    """
    CREATE TABLE observation_history (
        pipeline VARCHAR NOT NULL,
        unique_id VARCHAR NOT NULL,
        ds TIMESTAMP NOT NULL,
        y DOUBLE NOT NULL,
        batch_id VARCHAR NOT NULL,
        superseded_by VARCHAR NOT NULL,
        superseded_at TIMESTAMP NOT NULL
    );
    """,
    # 3: why each series got its forecast: backtest scores and provenance per run
    """
    CREATE TABLE backtest_scores (
        pipeline VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,
        unique_id VARCHAR NOT NULL,
        model VARCHAR NOT NULL,
        "window" INTEGER,
        status VARCHAR,
        metric VARCHAR NOT NULL,
        value DOUBLE
    );
    CREATE TABLE series_provenance (
        pipeline VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,
        unique_id VARCHAR NOT NULL,
        model VARCHAR,
        source VARCHAR NOT NULL,
        fallback_reason VARCHAR,
        metric VARCHAR,
        backtest_score DOUBLE,
        selection_reason VARCHAR,
        interval_source VARCHAR
    );
    """,
    # 4: data-quality findings of each run's check stage
    """
    CREATE TABLE check_results (
        pipeline VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,
        "check" VARCHAR NOT NULL,
        passed BOOLEAN NOT NULL,
        severity VARCHAR NOT NULL,
        blocking BOOLEAN NOT NULL,
        policy VARCHAR NOT NULL,
        unique_id VARCHAR,
        sentence VARCHAR NOT NULL,
        value DOUBLE,
        threshold DOUBLE,
        "at" TIMESTAMP
    );
    """,
    # 5: realised accuracy of published releases, scored when their actuals arrive (monitor).
    # Long like backtest_scores, since interval levels are configurable (coverage_L metrics).
    # unique_id NULL is the release as a whole; a rescore replaces a release's rows.
    """
    CREATE TABLE realised_accuracy (
        pipeline VARCHAR NOT NULL,
        release_id VARCHAR NOT NULL,
        run_id VARCHAR,
        created_at TIMESTAMP,
        unique_id VARCHAR,
        model VARCHAR,
        metric VARCHAR NOT NULL,
        value DOUBLE,
        promised DOUBLE,
        series INTEGER NOT NULL,
        points INTEGER NOT NULL,
        expected INTEGER NOT NULL,
        actuals_digest VARCHAR NOT NULL,
        scored_at TIMESTAMP NOT NULL
    );
    """,
    # 6: a stored row names its batch by a small number, not the 16-character batch id: the
    # id repeated on every row made writing a large batch markedly slower.
    """
    ALTER TABLE batches ADD COLUMN batch_no INTEGER;
    UPDATE batches SET batch_no = r.n
    FROM (SELECT pipeline, batch_id,
                 row_number() OVER (ORDER BY ingested_at, pipeline, batch_id) AS n
          FROM batches) r
    WHERE batches.pipeline = r.pipeline AND batches.batch_id = r.batch_id;
    ALTER TABLE observations ADD COLUMN batch_no INTEGER;
    UPDATE observations SET batch_no = b.batch_no FROM batches b
    WHERE b.pipeline = observations.pipeline AND b.batch_id = observations.batch_id;
    ALTER TABLE observations DROP COLUMN batch_id;
    """,
    # 7: which tier of models each series was given (full or fast; see steadycast.forecasting.tiers)
    """
    ALTER TABLE series_provenance ADD COLUMN tier VARCHAR;
    """,
    # 8: the last time each backtest window's model saw (UTC), so a person can tell which
    # days a score judged (the default windows line up with the forecast's hours and weekdays)
    """
    ALTER TABLE backtest_scores ADD COLUMN cutoff TIMESTAMP;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


class _LockHeld(Exception):
    """Another process holds the store file: worth waiting for."""


def _connect(path: Path, read_only: bool, memory_limit: str | None) -> duckdb.DuckDBPyConnection:
    """One attempt to open the store."""
    # DuckDB loads on the first connection: opening a workspace for a command that never
    # touches the store (``--help``, the forecast routes) does not pay for it.
    import duckdb

    try:
        config: dict[str, str | bool | int | float | list[str]] = {}
        if memory_limit:
            config["memory_limit"] = memory_limit
        con = duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise _LockHeld(str(exc)) from None
        raise WorkspaceError(f"{path}: the store cannot be opened ({exc})") from None
    con.execute("SET TimeZone = 'UTC'")
    # Progress is tracked (for steadycast's own bars) but never printed: DuckDB prints
    # to stdout, which belongs to --json output.
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    return con


def _open(
    path: Path, read_only: bool, wait_s: float, memory_limit: str | None
) -> duckdb.DuckDBPyConnection:
    """Open the store, waiting up to ``wait_s`` while another process holds it (backoff from
    0.05 s doubling to 1 s, with jitter so waiting processes do not retry in step)."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_LockHeld),
        wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.05),
        stop=tenacity.stop_after_delay(wait_s),
        reraise=True,
    )
    try:
        return retrying(_connect, path, read_only, memory_limit)
    except _LockHeld:
        raise StoreBusyError(
            f"{path}: the store is in use by another steadycast process "
            f"(waited {wait_s:.0f} s); try again when it has finished"
        ) from None


def migrate(con: duckdb.DuckDBPyConnection, target: int = SCHEMA_VERSION) -> int:
    """Bring the store up to ``target``; returns the version it had. Never downgrades."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    current = int(row[0]) if row and row[0] is not None else 0
    if current > SCHEMA_VERSION:
        raise WorkspaceError(
            f"the store has schema version {current}, newer than this steadycast "
            f"understands ({SCHEMA_VERSION}); upgrade steadycast"
        )
    for version in range(current + 1, target + 1):
        con.execute("BEGIN TRANSACTION")
        con.execute(MIGRATIONS[version - 1])
        con.execute("INSERT INTO schema_version VALUES (?)", [version])
        con.execute("COMMIT")
    return current


@contextmanager
def writing(
    path: Path,
    *,
    wait_s: float = 120.0,
    memory_limit: str | None = None,
    temp_dir: Path | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived write connection; the caller manages its transaction."""
    con = _open(path, read_only=False, wait_s=wait_s, memory_limit=memory_limit)
    try:
        if temp_dir is not None:
            temp_dir.mkdir(parents=True, exist_ok=True)
            con.execute("SET temp_directory = ?", [str(temp_dir)])
        threads = os.environ.get("STEADYCAST_THREADS")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        migrate(con)
        yield con
    finally:
        con.close()


@contextmanager
def reading(
    path: Path,
    *,
    wait_s: float = 30.0,
    memory_limit: str | None = None,
    temp_dir: Path | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived read-only connection; a large query spills to ``temp_dir`` past
    ``memory_limit`` (a whole-fleet snapshot must not take the machine's memory)."""
    if not path.exists():
        init = shlex.join(["steadycast", "init", str(path.parent)])
        raise WorkspaceError(f"{path}: no store here; run `{init}` first")
    con = _open(path, read_only=True, wait_s=wait_s, memory_limit=memory_limit)
    try:
        # fetchall consumes the result: a pending one would block the caller's next call.
        rows = con.execute("SELECT max(version) FROM schema_version").fetchall()
        version = int(rows[0][0]) if rows and rows[0][0] is not None else 0
        if version != SCHEMA_VERSION:
            con.close()
            # An older store is upgraded by the next writer; do it now, then read.
            with writing(path, wait_s=wait_s):
                pass
            con = _open(path, read_only=True, wait_s=wait_s, memory_limit=memory_limit)
        if temp_dir is not None:
            temp_dir.mkdir(parents=True, exist_ok=True)
            con.execute("SET temp_directory = ?", [str(temp_dir)])
        yield con
    finally:
        con.close()
