"""Everything a run report shows, gathered once from the control plane, the store and releases.

Gathering is kept apart from rendering so the report's facts can be tested without parsing HTML,
and so the store is held only for the few reads at the start (``store.reading`` is short-lived:
a run or an ingest may be waiting to write).

A run that stopped early (failed before its checks, its gate or its forecasts) lacks those
parts; they are reported as absent, so its report still renders.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from steadycast.errors import NotFoundError, SteadycastError
from steadycast.ingestion.timegrid import in_range_sql
from steadycast.storage import releases, store
from steadycast.storage.control import connect
from steadycast.storage.runlog import get_run
from steadycast.workspace import Workspace

SAMPLE_SERIES = 6
WORST_SERIES = 3
HISTORY_SEASONS = 3
MAX_HISTORY_POINTS = 24 * 14  # keeps the e-mail small even for long seasons


@dataclass
class ReportData:
    """The facts of one run, ready to render."""

    run: dict[str, Any]
    gate: list[dict[str, Any]] | None
    gate_passed: bool | None
    findings: pd.DataFrame | None  # None: the run never reached its check stage
    quarantine: pd.DataFrame
    model_mix: pd.DataFrame
    backtest: pd.DataFrame
    realised: pd.DataFrame
    stages: pd.DataFrame
    models: pd.DataFrame
    incidents: pd.DataFrame
    forecasts: pd.DataFrame
    history: pd.DataFrame
    levels: list[int]
    sample_ids: list[str]
    worst_ids: list[str]
    worst_metric: str | None
    worst_scores: dict[str, float]
    notes: list[str] = field(default_factory=list)


def _json_object(text: str | None) -> dict[str, Any]:
    """A recorded detail as a dict; an empty or free-text detail (older records) as ``{}``."""
    try:
        value = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _gate(run: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, bool | None]:
    """The gate's results as the run recorded them, and whether every blocking rule passed;
    ``(None, None)`` for a run that never reached the gate."""
    results = run["detail"].get("gate")
    if not isinstance(results, list) or not results:
        return None, None
    passed = all(r.get("passed", True) or not r.get("blocking", True) for r in results)
    return results, passed


def _run_rows(con: duckdb.DuckDBPyConnection, table: str, run_id: str) -> pd.DataFrame:
    """Every row a run wrote to ``table`` (a store table keyed by run)."""
    return con.execute(f"SELECT * FROM {table} WHERE run_id = ?", [run_id]).fetchdf()


def _release_frames(ws: Workspace, run: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The run's forecasts, provenance and manifest: its release, or what a held run kept."""
    places = [ws.root / "runs" / run["run_id"] / releases.HELD]
    if run.get("release_id"):
        places.insert(
            0, releases.pipeline_dir(ws.releases_dir, run["pipeline"]) / run["release_id"]
        )
    for place in places:
        if (place / releases.FORECASTS).exists():
            return (
                pq.read_table(place / releases.FORECASTS).to_pandas(),
                _parquet_or_empty(place / "provenance.parquet"),
                _manifest(place),
            )
    return pd.DataFrame(), pd.DataFrame(), {}


def _parquet_or_empty(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas() if path.exists() else pd.DataFrame()


def _manifest(place: Path) -> dict[str, Any]:
    """A release's manifest, or the meta a held run kept beside its forecasts."""
    for name in (releases.MANIFEST, "meta.json"):
        if (place / name).exists():
            found: dict[str, Any] = json.loads((place / name).read_text())
            return found
    return {}


def _levels(forecasts: pd.DataFrame, manifest: dict[str, Any]) -> list[int]:
    if isinstance(manifest.get("levels"), list):
        return [int(v) for v in manifest["levels"]]
    return sorted(
        int(c.removeprefix("yhat_lo_")) for c in forecasts.columns if c.startswith("yhat_lo_")
    )


def _pick_series(provenance: pd.DataFrame, ids: list[str]) -> tuple[list[str], dict[str, float]]:
    """An evenly spaced, deterministic sample, and the worst forecast series by backtest score
    (with their scores); a series is shown once, among the worst when it is one."""
    worst: dict[str, float] = {}
    if not provenance.empty and "backtest_score" in provenance.columns:
        scored = provenance[provenance["unique_id"].astype(str).isin(ids)]
        scored = scored.dropna(subset=["backtest_score"])
        scored = scored.sort_values(["backtest_score", "unique_id"], ascending=[False, True])
        worst = {
            str(u): float(s)
            for u, s in zip(
                scored["unique_id"].head(WORST_SERIES),
                scored["backtest_score"].head(WORST_SERIES),
                strict=True,
            )
        }
    rest = [u for u in ids if u not in worst]
    if len(rest) <= SAMPLE_SERIES:
        return rest, worst
    step = len(rest) / SAMPLE_SERIES
    return [rest[int(i * step)] for i in range(SAMPLE_SERIES)], worst


def _history_points(ws: Workspace, run: dict[str, Any], manifest: dict[str, Any]) -> int:
    """How much history to plot: three seasons or three horizons, capped for the e-mail."""
    season = 1
    # The pipeline file may have gone since the run; the horizon still sizes the plot.
    with contextlib.suppress(SteadycastError):
        season = ws.pipeline(run["pipeline"]).series.season_length
    horizon = int(manifest.get("horizon", 24) or 24)
    return min(MAX_HISTORY_POINTS, max(HISTORY_SEASONS * season, 3 * horizon))


def collect(ws: Workspace, run_id: str) -> ReportData:
    """Read everything the report of ``run_id`` shows; raises NotFoundError for an unknown run."""
    run = _load_run(ws, run_id)
    gate, gate_passed = _gate(run)
    forecasts, provenance, manifest = _release_frames(ws, run)
    notes = []
    if forecasts.empty:
        notes.append("No forecasts were found for this run (no release and no kept output).")
    ids = sorted(str(u) for u in forecasts["unique_id"].unique()) if not forecasts.empty else []
    with store.reading(ws.store_path) as con:
        if provenance.empty:
            provenance = con.execute(
                "SELECT * EXCLUDE (pipeline, run_id) FROM series_provenance WHERE run_id = ?",
                [run_id],
            ).fetchdf()
        sample_ids, worst_scores = _pick_series(provenance, ids)
        wanted = sample_ids + list(worst_scores)
        quarantine = _quarantine(con, run)
        backtest = _backtest_table(_backtest_means(con, run_id))
        checked = any(st["name"] == "check" for st in run["stages"])
        findings = _run_rows(con, "check_results", run_id) if checked else None
        realised = _run_rows(con, "realised_accuracy", run_id)
        history = _history(con, run["pipeline"], wanted, _history_points(ws, run, manifest))
    return ReportData(
        run=run,
        gate=gate,
        gate_passed=gate_passed,
        findings=findings,
        quarantine=quarantine,
        model_mix=_model_mix(provenance),
        backtest=backtest,
        realised=realised,
        stages=pd.DataFrame(run["stages"]),
        models=pd.DataFrame(run["models"]),
        incidents=_incidents(ws.control_path, run_id),
        forecasts=forecasts[forecasts["unique_id"].isin(wanted)] if wanted else forecasts,
        history=history,
        levels=_levels(forecasts, manifest),
        sample_ids=sample_ids,
        worst_ids=list(worst_scores),
        worst_metric=_worst_metric(provenance),
        worst_scores=worst_scores,
        notes=notes,
    )


def _load_run(ws: Workspace, run_id: str) -> dict[str, Any]:
    """The run's record with its stages and models, its detail decoded."""
    run = get_run(ws.control_path, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id!r} in {ws.root}; list runs with `steadycast runs`")
    run["detail"] = _json_object(run.get("detail"))
    return run


def _quarantine(con: duckdb.DuckDBPyConnection, run: dict[str, Any]) -> pd.DataFrame:
    """Quarantined rows by reason, of the batches ingested before the run ended."""
    return con.execute(
        "SELECT q.reason, count(*) AS rows, count(DISTINCT q.batch_id) AS batches, "
        "count(DISTINCT q.unique_id) AS series FROM quarantine q "
        "JOIN batches b ON b.pipeline = q.pipeline AND b.batch_id = q.batch_id "
        "WHERE q.pipeline = ? AND b.ingested_at <= CAST(? AS TIMESTAMP) "
        "GROUP BY q.reason ORDER BY rows DESC, q.reason",
        [run["pipeline"], _as_timestamp(run.get("finished_at") or run["started_at"])],
    ).fetchdf()


def _backtest_means(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    """Mean backtest score per model and metric, with the series and failed windows counted."""
    return con.execute(
        "SELECT model, metric, avg(value) AS mean, count(DISTINCT unique_id) AS series, "
        "count(*) FILTER (WHERE status IS DISTINCT FROM 'ok') AS failed_windows "
        "FROM backtest_scores WHERE run_id = ? AND value IS NOT NULL "
        "GROUP BY model, metric",
        [run_id],
    ).fetchdf()


def _history(
    con: duckdb.DuckDBPyConnection, pipeline: str, wanted: list[str], points: int
) -> pd.DataFrame:
    """The last ``points`` stored observations of each series to plot."""
    if not wanted:
        return pd.DataFrame(columns=["unique_id", "ds", "y"])
    return con.execute(
        "SELECT unique_id, ds, y FROM observations WHERE pipeline = ? "
        f"AND list_contains(?, unique_id) AND {in_range_sql('ds')} "
        "QUALIFY row_number() OVER (PARTITION BY unique_id ORDER BY ds DESC) <= ? "
        "ORDER BY unique_id, ds",
        [pipeline, wanted, points],
    ).fetchdf()


def _worst_metric(provenance: pd.DataFrame) -> str | None:
    """The metric the worst series are ranked by: the one most series were selected on."""
    if provenance.empty or "metric" not in provenance.columns:
        return None
    metrics = provenance["metric"].dropna()
    return str(metrics.mode().iloc[0]) if not metrics.empty else None


def _as_timestamp(text: str) -> str:
    """The control plane's ``...Z`` time as the naive UTC timestamp the store keeps."""
    return str(pd.Timestamp(text).tz_convert("UTC").tz_localize(None))


def _model_mix(provenance: pd.DataFrame) -> pd.DataFrame:
    if provenance.empty:
        return pd.DataFrame(columns=["model", "source", "series", "share"])
    frame = provenance.assign(
        model=provenance["model"].fillna("(none)"), source=provenance["source"].fillna("")
    )
    mix = frame.groupby(["model", "source"], dropna=False).size().reset_index(name="series")
    mix["share"] = (100 * mix["series"] / mix["series"].sum()).map(lambda v: f"{v:.1f}%")
    return mix.sort_values(["series", "model"], ascending=[False, True]).reset_index(drop=True)


def _backtest_table(long: pd.DataFrame) -> pd.DataFrame:
    """Mean score per model, one column per metric, best MASE (else first metric) first."""
    if long.empty:
        return pd.DataFrame()
    wide = long.pivot_table(index="model", columns="metric", values="mean", aggfunc="first")
    series = long.groupby("model")["series"].max()
    failed = long.groupby("model")["failed_windows"].max()
    order = [m for m in ("mase", "smape", "rmsse") if m in wide.columns]
    order += sorted(c for c in wide.columns if c not in order)
    wide = wide[order]
    wide.insert(0, "series", series)
    wide["failed_windows"] = failed
    key = "mase" if "mase" in wide.columns else order[0]
    return wide.sort_values(key).reset_index()


def _incidents(control_path: Path, run_id: str) -> pd.DataFrame:
    """The incidents this run opened or raised again."""
    with connect(control_path) as con:
        rows = con.execute(
            "SELECT id, kind, severity, state, title FROM incidents WHERE run_id = ? ORDER BY id",
            (run_id,),
        ).fetchall()
    return pd.DataFrame(
        [dict(r) for r in rows], columns=["id", "kind", "severity", "state", "title"]
    )
