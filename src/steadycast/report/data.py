"""Everything a run report shows, gathered once from the control plane, the store and releases.

Gathering is kept apart from rendering so the report's facts can be tested without parsing HTML,
and so the store is held only for the few reads at the start (``store.reading`` is short-lived:
a run or an ingest may be waiting to write).

Parts of a run record that other stages add over time (gate results, data-quality findings,
realised accuracy, incidents) are read where they are found and reported as absent otherwise,
so a report of an older run, or of a workspace made before a feature existed, still renders.
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
MAX_FINDINGS = 50
# Store tables another stage may add; read when present, skipped when not.
CHECK_TABLES = ("check_results", "checks")
REALISED_TABLES = ("realised_accuracy", "realized_accuracy", "realised_scores")


@dataclass
class ReportData:
    """The facts of one run, ready to render."""

    run: dict[str, Any]
    gate: list[dict[str, Any]] | None
    gate_passed: bool | None
    findings: pd.DataFrame | None
    quarantine: pd.DataFrame
    model_mix: pd.DataFrame
    backtest: pd.DataFrame
    realised: pd.DataFrame | None
    stages: pd.DataFrame
    models: pd.DataFrame
    incidents: pd.DataFrame | None
    forecasts: pd.DataFrame
    history: pd.DataFrame
    levels: list[int]
    sample_ids: list[str]
    worst_ids: list[str]
    worst_metric: str | None
    worst_scores: dict[str, float]
    notes: list[str] = field(default_factory=list)


def _json(value: Any) -> Any:
    if value is None or isinstance(value, dict | list):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _gate(run: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, bool | None]:
    """Gate results from wherever the run recorded them: a ``gate`` field, the run's detail, or
    the detail of a stage named ``gate``. Accepts a list of results or ``{"passed", "results"}``."""
    detail: dict[str, Any] = run["detail"] if isinstance(run.get("detail"), dict) else {}
    candidates: list[Any] = [_json(run.get("gate")), detail.get("gate")]
    for st in run.get("stages", []):
        if st.get("name") == "gate" and isinstance(st.get("detail"), dict):
            candidates += [st["detail"].get("results"), st["detail"].get("gate"), st["detail"]]
    for cand in candidates:
        passed: bool | None = None
        if isinstance(cand, dict) and isinstance(cand.get("results"), list):
            passed = bool(cand["passed"]) if "passed" in cand else None
            cand = cand["results"]
        if isinstance(cand, list) and all(isinstance(r, dict) for r in cand) and cand:
            if passed is None:
                passed = all(r.get("passed", True) or not r.get("blocking", True) for r in cand)
            return cand, passed
    return None, None


def _findings_from_run(run: dict[str, Any]) -> pd.DataFrame | None:
    detail: dict[str, Any] = run["detail"] if isinstance(run.get("detail"), dict) else {}
    sources: list[Any] = [detail.get("checks"), detail.get("findings")]
    for st in run.get("stages", []):
        if st.get("name") == "check" and isinstance(st.get("detail"), dict):
            sources += [st["detail"].get("results"), st["detail"].get("findings")]
    for src in sources:
        if isinstance(src, list) and all(isinstance(r, dict) for r in src):
            return pd.DataFrame(src)
    return None


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
    ).fetchall()
    return {r[0] for r in rows}


def _run_table(con: duckdb.DuckDBPyConnection, names: tuple[str, ...], run_id: str) -> Any:
    """Rows of the first optional table that exists and is keyed by run; None when none is."""
    present = _tables(con)
    for name in names:
        if name in present and "run_id" in _columns(con, name):
            return con.execute(f'SELECT * FROM "{name}" WHERE run_id = ?', [run_id]).fetchdf()
    return None


def _release_frames(ws: Workspace, run: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The run's forecasts and provenance: its release, or the files a held run kept."""
    pipeline, run_id = run["pipeline"], run["run_id"]
    places: list[Path] = []
    for rid in (run.get("release_id"), run_id):
        if rid:
            places.append(releases.pipeline_dir(ws.releases_dir, pipeline) / str(rid))
    places.append(ws.root / "runs" / run_id)
    for place in places:
        if (place / releases.FORECASTS).exists():
            manifest: dict[str, Any] = {}
            if (place / releases.MANIFEST).exists():
                manifest = json.loads((place / releases.MANIFEST).read_text())
            fc = pq.read_table(place / releases.FORECASTS).to_pandas()
            prov_path = place / "provenance.parquet"
            prov = pq.read_table(prov_path).to_pandas() if prov_path.exists() else pd.DataFrame()
            return fc, prov, manifest
    return pd.DataFrame(), pd.DataFrame(), {}


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


def _history_points(ws: Workspace, pipeline: str, manifest: dict[str, Any]) -> int:
    season = 1
    # The pipeline file may have gone since the run; the horizon still sizes the plot.
    with contextlib.suppress(SteadycastError):
        season = ws.pipeline(pipeline).series.season_length
    horizon = int(manifest.get("horizon", 24) or 24)
    return min(MAX_HISTORY_POINTS, max(HISTORY_SEASONS * season, 3 * horizon))


def collect(ws: Workspace, run_id: str) -> ReportData:
    """Read everything the report of ``run_id`` shows; raises NotFoundError for an unknown run."""
    run = get_run(ws.control_path, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id!r} in {ws.root}; list runs with `steadycast runs`")
    run["detail"] = _json(run.get("detail")) or {}
    for st in run["stages"]:
        st["detail"] = _json(st.get("detail")) or {}
    pipeline = run["pipeline"]
    notes: list[str] = []

    gate, gate_passed = _gate(run)
    findings = _findings_from_run(run)
    forecasts, provenance, manifest = _release_frames(ws, run)
    if forecasts.empty:
        notes.append("No forecasts were found for this run (no release and no kept output).")
    levels = _levels(forecasts, manifest)
    ids = sorted(str(u) for u in forecasts["unique_id"].unique()) if not forecasts.empty else []

    with store.reading(ws.store_path) as con:
        quarantine = con.execute(
            "SELECT q.reason, count(*) AS rows, count(DISTINCT q.batch_id) AS batches, "
            "count(DISTINCT q.unique_id) AS series FROM quarantine q "
            "JOIN batches b ON b.pipeline = q.pipeline AND b.batch_id = q.batch_id "
            "WHERE q.pipeline = ? AND b.ingested_at <= CAST(? AS TIMESTAMP) "
            "GROUP BY q.reason ORDER BY rows DESC, q.reason",
            [pipeline, _as_timestamp(run.get("finished_at") or run["started_at"])],
        ).fetchdf()
        if provenance.empty:
            provenance = con.execute(
                "SELECT * EXCLUDE (pipeline, run_id) FROM series_provenance WHERE run_id = ?",
                [run_id],
            ).fetchdf()
        backtest = con.execute(
            "SELECT model, metric, avg(value) AS mean, count(DISTINCT unique_id) AS series, "
            "count(*) FILTER (WHERE status IS DISTINCT FROM 'ok') AS failed_windows "
            "FROM backtest_scores WHERE run_id = ? AND value IS NOT NULL "
            "GROUP BY model, metric",
            [run_id],
        ).fetchdf()
        if findings is None:
            findings = _run_table(con, CHECK_TABLES, run_id)
        realised = _run_table(con, REALISED_TABLES, run_id)
        sample_ids, worst_scores = _pick_series(provenance, ids)
        wanted = sample_ids + list(worst_scores)
        history = pd.DataFrame(columns=["unique_id", "ds", "y"])
        if wanted:
            history = con.execute(
                "SELECT unique_id, ds, y FROM observations WHERE pipeline = ? "
                f"AND list_contains(?, unique_id) AND {in_range_sql('ds')} "
                "QUALIFY row_number() OVER (PARTITION BY unique_id ORDER BY ds DESC) <= ? "
                "ORDER BY unique_id, ds",
                [pipeline, wanted, _history_points(ws, pipeline, manifest)],
            ).fetchdf()

    incidents = _incidents(ws.control_path, run_id)
    worst_metric = None
    if not provenance.empty and "metric" in provenance.columns:
        metrics = provenance["metric"].dropna()
        worst_metric = str(metrics.mode().iloc[0]) if not metrics.empty else None

    return ReportData(
        run=run,
        gate=gate,
        gate_passed=gate_passed,
        findings=findings,
        quarantine=quarantine,
        model_mix=_model_mix(provenance),
        backtest=_backtest_table(backtest),
        realised=realised,
        stages=pd.DataFrame(run["stages"]),
        models=pd.DataFrame(run["models"]),
        incidents=incidents,
        forecasts=forecasts[forecasts["unique_id"].isin(wanted)] if wanted else forecasts,
        history=history,
        levels=levels,
        sample_ids=sample_ids,
        worst_ids=list(worst_scores),
        worst_metric=worst_metric,
        worst_scores=worst_scores,
        notes=notes,
    )


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


def _incidents(control_path: Path, run_id: str) -> pd.DataFrame | None:
    with connect(control_path) as con:
        exists = con.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'incidents'"
        ).fetchone()
        if exists is None:
            return None
        rows = con.execute(
            "SELECT id, kind, severity, state, title FROM incidents WHERE run_id = ? ORDER BY id",
            (run_id,),
        ).fetchall()
    return pd.DataFrame(
        [dict(r) for r in rows], columns=["id", "kind", "severity", "state", "title"]
    )
