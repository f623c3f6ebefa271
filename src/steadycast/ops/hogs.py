"""Run history and resource hogs: which pipelines, stages and models cost the most.

Both read only the control plane (SQLite, WAL), so ``steadycast runs`` and ``steadycast hogs``
answer while a run is working and never touch the DuckDB store. A pipeline's CPU is the sum of
its stages' CPU, which includes the model worker processes (see ``storage/runlog.py``); its memory
is the highest peak any of its stages reached.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from steadycast.errors import UsageError
from steadycast.storage.control import connect
from steadycast.storage.outcome import outcome
from steadycast.workspace import Workspace

__all__ = ["hogs", "parse_since", "run_history"]

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # the control plane's format; compares as text


def parse_since(text: str) -> timedelta:
    """``"30m"``, ``"12h"``, ``"7d"``, ``"2w"`` (and ``"90s"``) as a time span."""
    spelled = text.strip().lower()
    number, unit = spelled[:-1].strip(), spelled[-1:]
    # A plain decimal number: no sign, exponent, "nan" or "inf" for float() to let through.
    plain = number.isascii() and number.replace(".", "", 1).isdigit()
    if unit not in _UNITS or not plain:
        raise UsageError(
            f"--since {text!r} is not a time span; use a number and a unit (s, m, h, d, w), "
            "e.g. 30m, 12h, 7d"
        )
    amount = float(number)
    if amount <= 0:
        raise UsageError(f"--since {text!r} must be longer than zero")
    return timedelta(**{_UNITS[unit]: amount})


def run_history(
    ws: Workspace, pipeline: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """The newest runs first, each with its stages (wall, CPU, peak MB, rows), totals and
    ``outcome`` (how it ended and what happened after, ``storage/outcome.py``).

    A run's ``wall_s`` is the time from start to finish (or its recorded wall time); ``cpu_s``
    and ``peak_rss_mb`` are summed and maxed over its stages when the run did not record them.
    """
    if limit < 1:
        raise UsageError(f"limit must be at least 1, not {limit}")
    with connect(ws.control_path) as con:
        if pipeline is None:
            rows = con.execute(
                "SELECT * FROM runs ORDER BY started_at DESC, run_id DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = con.execute(
                "SELECT * FROM runs WHERE pipeline = ? ORDER BY started_at DESC, run_id DESC "
                "LIMIT ?",
                (pipeline, limit),
            ).fetchall()
        runs = [dict(r) for r in rows]
        for run in runs:
            stages = con.execute(
                "SELECT name, seq, status, started_at, wall_s, cpu_s, peak_rss_mb, rows_in, "
                "rows_out, rows_rejected, series_in, series_out FROM stages WHERE run_id = ? "
                "ORDER BY seq",
                (run["run_id"],),
            ).fetchall()
            run["stages"] = [dict(s) for s in stages]
    return [_summarise(run) for run in runs]


def _summarise(run: dict[str, Any]) -> dict[str, Any]:
    stages = run["stages"]
    if run.get("detail"):
        # An old free-text detail is returned as it is.
        with contextlib.suppress(ValueError):
            run["detail"] = json.loads(run["detail"])
    run["outcome"] = outcome(run.get("status"), run.get("detail"))
    if run.get("wall_s") is None and run.get("finished_at"):
        start = datetime.strptime(run["started_at"], _TIME)
        end = datetime.strptime(run["finished_at"], _TIME)
        run["wall_s"] = round((end - start).total_seconds(), 3)
    if run.get("cpu_s") is None and stages:
        run["cpu_s"] = round(sum(s["cpu_s"] or 0.0 for s in stages), 3)
    if run.get("peak_rss_mb") is None and stages:
        run["peak_rss_mb"] = round(max(s["peak_rss_mb"] or 0.0 for s in stages), 1)
    return run


def hogs(
    ws: Workspace,
    since: timedelta,
    *,
    by: Literal["cpu", "memory"] = "cpu",
    limit: int = 10,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The top consumers among runs started within ``since`` of ``now``, biggest first.

    Returns ``{"since", "until", "by", "pipelines", "stages", "models"}``; each list holds
    dicts with ``cpu_s``, ``peak_rss_mb`` and ``runs`` (pipelines and stages also ``wall_s``;
    models ``tasks`` and ``failures``), ordered by CPU seconds or by peak memory.
    """
    if by not in ("cpu", "memory"):
        raise UsageError(f"--by {by!r} is not one of cpu, memory")
    until = (now or datetime.now(UTC)).astimezone(UTC)
    start = until - since
    window = (start.strftime(_TIME), until.strftime(_TIME))
    order = "cpu_s DESC, peak_rss_mb DESC" if by == "cpu" else "peak_rss_mb DESC, cpu_s DESC"
    runs_in_window = "SELECT run_id, pipeline FROM runs WHERE started_at >= ? AND started_at <= ?"
    with connect(ws.control_path) as con:
        pipelines = con.execute(
            f"SELECT r.pipeline, count(DISTINCT r.run_id) AS runs, "
            f"round(coalesce(sum(s.wall_s), 0), 3) AS wall_s, "
            f"round(coalesce(sum(s.cpu_s), 0), 3) AS cpu_s, "
            f"round(coalesce(max(s.peak_rss_mb), 0), 1) AS peak_rss_mb "
            f"FROM ({runs_in_window}) r LEFT JOIN stages s USING (run_id) "
            f"GROUP BY r.pipeline ORDER BY {order}, r.pipeline LIMIT ?",
            (*window, limit),
        ).fetchall()
        stages = con.execute(
            f"SELECT r.pipeline, s.name AS stage, count(*) AS runs, "
            f"round(sum(coalesce(s.wall_s, 0)), 3) AS wall_s, "
            f"round(sum(coalesce(s.cpu_s, 0)), 3) AS cpu_s, "
            f"round(max(coalesce(s.peak_rss_mb, 0)), 1) AS peak_rss_mb "
            f"FROM ({runs_in_window}) r JOIN stages s USING (run_id) "
            f"GROUP BY r.pipeline, s.name ORDER BY {order}, r.pipeline, s.name LIMIT ?",
            (*window, limit),
        ).fetchall()
        models = con.execute(
            f"SELECT m.model, r.pipeline, count(*) AS runs, sum(m.tasks) AS tasks, "
            f"sum(m.failures) AS failures, round(sum(m.cpu_s), 3) AS cpu_s, "
            f"round(max(m.peak_rss_mb), 1) AS peak_rss_mb "
            f"FROM ({runs_in_window}) r JOIN model_usage m USING (run_id) "
            f"GROUP BY m.model, r.pipeline ORDER BY {order}, m.model, r.pipeline LIMIT ?",
            (*window, limit),
        ).fetchall()
    return {
        "since": start.isoformat(),
        "until": until.isoformat(),
        "by": by,
        "pipelines": [dict(r) for r in pipelines],
        "stages": [dict(r) for r in stages],
        "models": [dict(r) for r in models],
    }
