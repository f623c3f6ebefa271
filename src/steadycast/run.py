"""One run of a pipeline: snapshot, prepare, backtest and select, forecast, publish.

The run takes the pipeline lock, reads a snapshot of its observations into Parquet partitions
(holding the store only for that read), works partition by partition with model code isolated in
worker processes, and writes one immutable release. Every stage is measured and recorded in the
control plane as it goes, so a run that dies leaves a record of where and why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import shutil
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from steadycast import control, releases, store
from steadycast.config import PipelineConfig
from steadycast.errors import ParityError, SteadycastError
from steadycast.models.isolation import IsolatedRunner
from steadycast.models.registry import SteadycastPluginWarning, available_models
from steadycast.ops import runlog
from steadycast.ops.logging import run_context
from steadycast.stages.forecast import PartitionResult, run_partition
from steadycast.stages.prepare import regularize
from steadycast.workspace import Workspace

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class RunResult:
    """The ``--json`` shape of ``steadycast run``."""

    run_id: str
    pipeline: str
    status: str  # "published" | "held" | "failed"
    release_id: str | None = None
    series: int = 0
    fallback_series: int = 0
    gate: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "status": self.status,
            "release_id": self.release_id,
            "series": self.series,
            "fallback_series": self.fallback_series,
            "gate": self.gate,
            "stages": self.stages,
        }
        if self.error:
            out["error"] = self.error
        return out


def new_run_id(pipeline: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{pipeline}-{stamp}-{secrets.token_hex(2)}"


def config_digest(cfg: PipelineConfig) -> str:
    return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()


def _snapshot(
    ws: Workspace, cfg: PipelineConfig, run_dir: Path, record: runlog.StageRecord
) -> list[Path]:
    """Copy the pipeline's observations into Parquet partitions of series, then let go."""
    target = run_dir / "snapshot"
    shutil.rmtree(target, ignore_errors=True)
    with store.reading(ws.store_path) as con:
        row = con.execute(
            "SELECT count(*), count(DISTINCT unique_id) FROM observations WHERE pipeline = ?",
            [cfg.name],
        ).fetchone()
        rows, series = (int(row[0]), int(row[1])) if row else (0, 0)
        batches = con.execute(
            "SELECT batch_id FROM batches WHERE pipeline = ? ORDER BY batch_id", [cfg.name]
        ).fetchall()
        if series:
            parts = max(1, math.ceil(series / cfg.forecast.partition_size))
            target.mkdir(parents=True)
            # hash() is deterministic, so a series lands in the same partition on every engine.
            con.execute(
                f"COPY (SELECT unique_id, ds, y, CAST(hash(unique_id) % {parts} AS INTEGER) AS part "
                "FROM observations WHERE pipeline = ? ORDER BY part, unique_id, ds) "
                f"TO '{target}' (FORMAT parquet, PARTITION_BY (part))",
                [cfg.name],
            )
    record.rows_in = record.rows_out = rows
    record.series_in = record.series_out = series
    record.detail["snapshot_sha256"] = hashlib.sha256(
        ",".join(b[0] for b in batches).encode()
    ).hexdigest()
    return sorted(target.glob("part=*/*.parquet")) if series else []


def _read_partition(path: Path) -> pd.DataFrame:
    frame = pq.read_table(path, columns=["unique_id", "ds", "y"]).to_pandas()
    frame["unique_id"] = frame["unique_id"].astype(str)
    frame["ds"] = frame["ds"].astype("datetime64[ns]")
    return frame


def forecast_one_partition(
    history: pd.DataFrame, cfg: PipelineConfig, runner: Any, last_published: pd.DataFrame | None
) -> tuple[PartitionResult, pd.DataFrame]:
    """Prepare and forecast one partition: the engine-neutral unit of work."""
    max_fill = max(cfg.series.horizon, cfg.series.season_length)
    prepared, report = regularize(history, cfg.series.frequency, max_fill=max_fill)
    return run_partition(prepared, cfg, runner, last_published), report


def _scores_long(scores: pd.DataFrame, pipeline: str, run_id: str) -> pd.DataFrame:
    if scores.empty:
        return pd.DataFrame()
    metrics = [
        c for c in scores.columns if c in ("mase", "smape", "rmsse") or c.startswith("coverage_")
    ]
    long = scores.melt(
        id_vars=["unique_id", "model", "window", "status"],
        value_vars=metrics,
        var_name="metric",
        value_name="value",
    )
    long.insert(0, "run_id", run_id)
    long.insert(0, "pipeline", pipeline)
    return long[["pipeline", "run_id", "unique_id", "model", "window", "status", "metric", "value"]]


def _store_explanations(
    ws: Workspace, pipeline: str, run_id: str, scores: pd.DataFrame, provenance: pd.DataFrame
) -> None:
    """Keep every backtest score and each series' provenance, so a choice can be explained."""
    long = _scores_long(scores, pipeline, run_id)
    prov = provenance.copy()
    prov.insert(0, "run_id", run_id)
    prov.insert(0, "pipeline", pipeline)
    prov = prov[
        [
            "pipeline",
            "run_id",
            "unique_id",
            "model",
            "source",
            "fallback_reason",
            "metric",
            "backtest_score",
            "selection_reason",
            "interval_source",
        ]
    ]
    with store.writing(ws.store_path) as con:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM backtest_scores WHERE run_id = ?", [run_id])
        con.execute("DELETE FROM series_provenance WHERE run_id = ?", [run_id])
        if not long.empty:
            con.register("scores_df", long)
            con.execute("INSERT INTO backtest_scores SELECT * FROM scores_df")
            con.unregister("scores_df")
        con.register("prov_df", prov)
        con.execute("INSERT INTO series_provenance SELECT * FROM prov_df")
        con.unregister("prov_df")
        con.execute("COMMIT")


def clip_to_range(forecasts: pd.DataFrame, cfg: PipelineConfig) -> int:
    """Keep forecasts and interval bounds inside the series' allowed range; returns how many
    point forecasts had to be moved. Values outside [min_value, max_value] are impossible by the
    pipeline's own definition (ingest quarantines them), so a forecast there is never useful."""
    lo, hi = cfg.series.min_value, cfg.series.max_value
    if lo is None and hi is None:
        return 0
    cols = [c for c in forecasts.columns if c == "yhat" or c.startswith(("yhat_lo_", "yhat_hi_"))]
    y = forecasts["yhat"]
    moved = int((y < lo).sum()) if lo is not None else 0
    moved += int((y > hi).sum()) if hi is not None else 0
    forecasts[cols] = forecasts[cols].clip(lower=lo, upper=hi)
    return moved


def export_columns(forecasts: pd.DataFrame, levels: list[int]) -> list[str]:
    cols = ["unique_id", "ds", "yhat", "model"]
    for level in levels:
        cols += [f"yhat_lo_{level}", f"yhat_hi_{level}"]
    return [c for c in cols if c in forecasts.columns]


def run_pipeline(ws: Workspace, pipeline: str, *, progress: Progress | None = None) -> RunResult:
    """Run a pipeline end to end; the result says what happened (it also records it)."""
    cfg = ws.pipeline(pipeline)
    run_id = new_run_id(pipeline)
    result = RunResult(run_id=run_id, pipeline=pipeline, status="failed")
    run_dir = ws.root / "runs" / run_id
    with runlog.pipeline_lock(ws.control_path, pipeline, run_id):
        runlog.start_run(ws.control_path, run_id, pipeline, cfg.engine.name, config_digest(cfg))
        control.audit(ws.control_path, "run.started", pipeline=pipeline, subject=run_id)
        records: list[runlog.StageRecord] = []
        try:
            with run_context(run_id, pipeline):
                log.info("run started")
                _execute(ws, cfg, run_id, run_dir, result, records, progress)
                log.info("run finished: %s", result.status)
        except SteadycastError as exc:
            result.error = str(exc)
        except Exception as exc:
            result.error = f"internal error: {type(exc).__name__}: {exc}"
            runlog.update_run(
                ws.control_path,
                run_id,
                status="failed",
                finished_at=control.utcnow(),
                error=result.error,
                detail={"traceback": traceback.format_exc(limit=20)},
            )
            control.audit(
                ws.control_path,
                "run.failed",
                pipeline=pipeline,
                subject=run_id,
                reason=result.error,
            )
            raise
        finally:
            result.stages = [r.as_dict() for r in records if r.usage is not None]
        if result.error is not None:
            result.status = "failed"
            runlog.update_run(
                ws.control_path,
                run_id,
                status="failed",
                finished_at=control.utcnow(),
                error=result.error,
            )
            control.audit(
                ws.control_path,
                "run.failed",
                pipeline=pipeline,
                subject=run_id,
                reason=result.error,
            )
    return result


def _execute(
    ws: Workspace,
    cfg: PipelineConfig,
    run_id: str,
    run_dir: Path,
    result: RunResult,
    records: list[runlog.StageRecord],
    progress: Progress | None,
) -> None:
    pipeline = cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    with runlog.stage(ws.control_path, run_id, "snapshot", 1) as rec:
        records.append(rec)
        parts = _snapshot(ws, cfg, run_dir, rec)
    runlog.update_run(ws.control_path, run_id, snapshot_sha256=rec.detail["snapshot_sha256"])
    if not parts:
        raise SteadycastError(
            f"pipeline {pipeline!r} has no stored observations; ingest data first "
            f"(steadycast ingest {pipeline} FILE)"
        )

    previous = releases.current(ws.releases_dir, pipeline)
    last_published = releases.read_forecasts(previous) if previous else None

    outputs: list[PartitionResult] = []
    reports: list[pd.DataFrame] = []
    with (
        runlog.stage(ws.control_path, run_id, "forecast", 2) as rec,
        warnings.catch_warnings(record=True) as caught,
    ):
        # A broken plugin is recorded with the run (and skipped), never a crash.
        warnings.simplefilter("always", SteadycastPluginWarning)
        records.append(rec)
        if cfg.models.plugins:
            available_models(plugins=True, disabled=cfg.models.disabled_plugins)
        fc = cfg.forecast
        with IsolatedRunner(
            workers=fc.workers, timeout_s=fc.timeout_s, memory_mb=fc.memory_mb
        ) as runner:
            for done, path in enumerate(parts):
                history = _read_partition(path)
                rec.rows_in += len(history)
                rec.series_in += history["unique_id"].nunique()
                last = None
                if last_published is not None:
                    last = last_published[
                        last_published["unique_id"].isin(history["unique_id"].unique())
                    ]
                out, report = forecast_one_partition(history, cfg, runner, last)
                outputs.append(out)
                reports.append(report)
                if progress:
                    progress("forecast", done + 1, len(parts))
            usage = runner.usage()
        rec.extra_cpu_s = sum(u.cpu_s for u in usage.values())
        rec.extra_peak_mb = max((u.peak_rss_mb for u in usage.values()), default=0.0)
        runlog.record_model_usage(ws.control_path, run_id, usage)
        forecasts = pd.concat([o.forecasts for o in outputs], ignore_index=True)
        provenance = pd.concat([o.provenance for o in outputs], ignore_index=True)
        scores = (
            pd.concat([o.scores for o in outputs if not o.scores.empty], ignore_index=True)
            if any(not o.scores.empty for o in outputs)
            else pd.DataFrame()
        )
        rec.detail["clipped_to_range"] = clip_to_range(forecasts, cfg)
        rec.detail["plugin_failures"] = sorted(
            {str(w.message) for w in caught if issubclass(w.category, SteadycastPluginWarning)}
        )
        rec.series_out = int(provenance["unique_id"].nunique())
        rec.rows_out = len(forecasts)
        rec.detail["prepared"] = {
            "filled_points": int(sum(r["filled"].sum() for r in reports)),
            "series_cut": int(sum(r["cut_before"].notna().sum() for r in reports)),
        }
        if rec.series_out != rec.series_in:
            raise ParityError(
                f"forecast stage: {rec.series_in} series in, {rec.series_out} with a provenance out"
            )

    result.series = int(provenance["unique_id"].nunique())
    result.fallback_series = int(provenance["source"].isin(["fallback", "none"]).sum())
    _store_explanations(ws, pipeline, run_id, scores, provenance)

    with runlog.stage(ws.control_path, run_id, "publish", 3) as rec:
        records.append(rec)
        levels = list(cfg.models.levels)
        export = (
            forecasts[export_columns(forecasts, levels)]
            .sort_values(["unique_id", "ds"])
            .reset_index(drop=True)
        )
        rec.rows_in = rec.rows_out = len(export)
        release = releases.write_release(
            ws.releases_dir,
            pipeline,
            run_id,
            export,
            {
                "levels": levels,
                "frequency": cfg.series.frequency,
                "horizon": cfg.series.horizon,
                "fallback_series": result.fallback_series,
            },
            extras={"provenance": provenance},
        )
        releases.make_current(ws.releases_dir, pipeline, release.release_id)
    result.release_id = release.release_id
    result.status = "published"
    runlog.update_run(
        ws.control_path,
        run_id,
        status="published",
        finished_at=control.utcnow(),
        release_id=release.release_id,
        series=result.series,
        fallback_series=result.fallback_series,
    )
    control.audit(
        ws.control_path,
        "release.published",
        pipeline=pipeline,
        subject=release.release_id,
        detail={
            "run_id": run_id,
            "series": result.series,
            "fallback_series": result.fallback_series,
            "content_sha256": release.manifest["content_sha256"],
        },
    )
    json.dumps(result.as_dict())  # the record must always serialise
