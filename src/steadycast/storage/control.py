"""The control plane: small, frequently touched records that many processes read at once.

Runs, stages, incidents, the audit log, pipeline locks and what each sink holds live in SQLite in WAL mode, so
``steadycast status``, the server or an ``ack`` can read while a run or an ingest writes, and a
long run never locks anyone out of the DuckDB store (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from steadycast.errors import WorkspaceError

CONTROL_FILE = "control.sqlite"

MIGRATIONS: list[str] = [
    # 1: the audit log
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        pipeline TEXT,
        subject TEXT,
        reason TEXT,
        detail TEXT
    );
    CREATE INDEX audit_pipeline_at ON audit (pipeline, at);
    """,
    # 2: runs, their stages and models, and the one-run-per-pipeline lock
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        pipeline TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        engine TEXT,
        config_sha256 TEXT,
        snapshot_sha256 TEXT,
        release_id TEXT,
        series INTEGER,
        fallback_series INTEGER,
        error TEXT,
        pid INTEGER,
        host TEXT,
        wall_s REAL,
        cpu_s REAL,
        peak_rss_mb REAL,
        detail TEXT
    );
    CREATE INDEX runs_pipeline_started ON runs (pipeline, started_at);
    CREATE TABLE stages (
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        seq INTEGER NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        wall_s REAL,
        cpu_s REAL,
        peak_rss_mb REAL,
        rows_in INTEGER,
        rows_out INTEGER,
        rows_rejected INTEGER,
        series_in INTEGER,
        series_out INTEGER,
        detail TEXT,
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE model_usage (
        run_id TEXT NOT NULL,
        model TEXT NOT NULL,
        tasks INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        cpu_s REAL NOT NULL,
        peak_rss_mb REAL NOT NULL,
        PRIMARY KEY (run_id, model)
    );
    CREATE TABLE locks (
        pipeline TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        since TEXT NOT NULL
    );
    """,
    # 3: incidents, de-duplicated by fingerprint: at most one live (not resolved) per fingerprint
    """
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        fingerprint TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        state TEXT NOT NULL,
        title TEXT NOT NULL,
        detail TEXT,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        occurrences INTEGER NOT NULL DEFAULT 1,
        run_id TEXT,
        acknowledged_by TEXT,
        acknowledged_at TEXT,
        acknowledge_note TEXT,
        resolved_by TEXT,
        resolved_at TEXT,
        resolution TEXT
    );
    CREATE UNIQUE INDEX incidents_live_fingerprint ON incidents (fingerprint)
        WHERE state != 'resolved';
    CREATE INDEX incidents_pipeline_state ON incidents (pipeline, state);
    """,
    # 4: sinks: which release each sink of a pipeline holds, and its last failed delivery
    """
    CREATE TABLE sinks (
        pipeline TEXT NOT NULL,
        sink TEXT NOT NULL,
        release_id TEXT,
        delivered_at TEXT,
        pending_release_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_attempt_at TEXT,
        last_error TEXT,
        PRIMARY KEY (pipeline, sink)
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def utcnow() -> str:
    """ISO 8601 in UTC with a Z, the one time format of the control plane."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def current_actor() -> str:
    """Who is acting: the API token's name when set by the server, else the OS user."""
    actor = os.environ.get("STEADYCAST_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def _migrate(con: sqlite3.Connection) -> None:
    current = con.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise WorkspaceError(
            f"the control database has schema version {current}, newer than this steadycast "
            f"understands ({SCHEMA_VERSION}); upgrade steadycast"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        with con:
            con.executescript(
                "BEGIN;" + MIGRATIONS[version - 1] + f"PRAGMA user_version = {version};COMMIT;"
            )


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection in WAL mode with a generous busy timeout; migrated on first use."""
    con = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA busy_timeout=30000")
        _migrate(con)
        yield con
    finally:
        con.close()


def audit(
    path: Path,
    action: str,
    *,
    pipeline: str | None = None,
    subject: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one change of state to the audit log."""
    with connect(path) as con:
        con.execute(
            "INSERT INTO audit (at, actor, action, pipeline, subject, reason, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                utcnow(),
                current_actor(),
                action,
                pipeline,
                subject,
                reason,
                json.dumps(detail, default=str, sort_keys=True) if detail else None,
            ),
        )


def audit_entries(path: Path, pipeline: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest audit entries first."""
    with connect(path) as con:
        if pipeline is None:
            rows = con.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = con.execute(
                "SELECT * FROM audit WHERE pipeline = ? ORDER BY id DESC LIMIT ?", (pipeline, limit)
            )
        out = []
        for row in rows.fetchall():
            entry = dict(row)
            entry["detail"] = json.loads(entry["detail"]) if entry["detail"] else None
            out.append(entry)
        return out
