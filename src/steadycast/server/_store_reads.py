"""The only reads of the DuckDB store the server makes: a series' history and a pipeline's data
quality. Each opens the store read-only for one query, and waits at most ``STORE_WAIT_S`` for a
process that holds it (the caller says so in its answer instead of hanging)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from steadycast.errors import StoreBusyError, WorkspaceError
from steadycast.server._encode import iso, plain
from steadycast.storage import store
from steadycast.workspace import Workspace

STORE_WAIT_S = 1.0


def series_store(
    ws: Workspace,
    pipeline: str,
    series_id: str,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """History before ``start`` (newest ``limit`` points) and actuals in [start, end]."""
    with store.reading(ws.store_path, wait_s=STORE_WAIT_S) as con:
        if start is None:
            tail = con.execute(
                "SELECT ds, y FROM observations WHERE pipeline = ? AND unique_id = ? "
                "ORDER BY ds DESC LIMIT ?",
                [pipeline, series_id, limit],
            ).fetchall()
            actual: list[Any] = []
        else:
            tail = con.execute(
                "SELECT ds, y FROM observations WHERE pipeline = ? AND unique_id = ? AND ds < ? "
                "ORDER BY ds DESC LIMIT ?",
                [pipeline, series_id, start, limit],
            ).fetchall()
            actual = con.execute(
                "SELECT ds, y FROM observations WHERE pipeline = ? AND unique_id = ? "
                "AND ds >= ? AND ds <= ? ORDER BY ds",
                [pipeline, series_id, start, end],
            ).fetchall()
    history = [{"ds": iso(ds), "y": float(y)} for ds, y in reversed(tail)]
    actuals = [{"ds": iso(ds), "y": float(y)} for ds, y in actual]
    return history, actuals


def _latest_checks(
    con: duckdb.DuckDBPyConnection, pipeline: str, limit: int, offset: int
) -> tuple[list[dict[str, Any]], str, int] | None:
    """One page of the check results of the pipeline's newest checked run (failures first),
    their run and their total, if the store holds any: a fleet has a check per series."""
    has_checks = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'check_results'"
    ).fetchone()
    if not (has_checks and has_checks[0]):
        return None
    latest = con.execute(
        'SELECT run_id FROM check_results WHERE pipeline = ? ORDER BY "at" DESC NULLS LAST LIMIT 1',
        [pipeline],
    ).fetchone()
    if latest is None:
        return None
    frame = con.execute(
        "SELECT * FROM check_results WHERE pipeline = ? AND run_id = ? "
        'ORDER BY passed, severity DESC, "check", unique_id LIMIT ? OFFSET ?',
        [pipeline, latest[0], limit, offset],
    ).fetchall()
    names = [d[0] for d in con.description or []]
    total = con.execute(
        "SELECT count(*) FROM check_results WHERE pipeline = ? AND run_id = ?",
        [pipeline, latest[0]],
    ).fetchone()
    rows = [dict(zip(names, row, strict=True)) for row in frame]
    return rows, str(latest[0]), int(total[0]) if total else len(rows)


def quality(ws: Workspace, pipeline: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """Quarantined rows by reason and one page of the latest check results (``checks_total``
    of them in all); ``store_readable`` is false (and the counts empty) while another process
    holds the store."""
    # The run history lives in the control plane; imported here, on the first quality read.
    from steadycast.ops.hogs import run_history

    out: dict[str, Any] = {
        "pipeline": pipeline,
        "store_readable": False,
        "quarantined_rows": None,
        "quarantine": [],
        "checks": None,
        "checks_run_id": None,
        "checks_total": 0,
        "limit": limit,
        "offset": offset,
    }
    try:
        with store.reading(ws.store_path, wait_s=STORE_WAIT_S) as con:
            counts = con.execute(
                "SELECT reason, count(*) FROM quarantine WHERE pipeline = ? "
                "GROUP BY reason ORDER BY count(*) DESC, reason",
                [pipeline],
            ).fetchall()
            checks = _latest_checks(con, pipeline, limit, offset)
    except (StoreBusyError, WorkspaceError):
        return out
    if checks is not None:
        out["checks"], out["checks_run_id"], out["checks_total"] = checks
    out["store_readable"] = True
    out["quarantine"] = [{"reason": str(r), "rows": int(n)} for r, n in counts]
    out["quarantined_rows"] = sum(int(n) for _, n in counts)
    if out["checks"] is None:
        runs = run_history(ws, pipeline, limit=1)
        detail = runs[0].get("detail") if runs else None
        if isinstance(detail, dict) and isinstance(detail.get("checks"), list):
            out["checks"] = detail["checks"][offset : offset + limit]
            out["checks_run_id"] = runs[0]["run_id"]
            out["checks_total"] = len(detail["checks"])
    return plain(out)
