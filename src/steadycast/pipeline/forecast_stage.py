"""The forecast stage: every partition on the pipeline's engine, then what was committed
gathered into the run's forecasts, provenance and backtest scores.

The engine only runs ``PartitionWork`` where it chooses; resumption (from an interrupted run on
the same snapshot and config), accounting, parity and the release's inputs are decided here,
the same way for every engine.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from steadycast.config import PipelineConfig
from steadycast.engines import Job, TaskReport, create_engine
from steadycast.engines.base import EngineRun, total_usage
from steadycast.engines.commit import clear_staging, copy_committed, is_committed
from steadycast.engines.pool import PartitionPool
from steadycast.errors import ParityError, SteadycastError
from steadycast.forecasting import tiers
from steadycast.forecasting.covariates import covariate_fallbacks, unseen_series
from steadycast.forecasting.forecast import PROVENANCE_COLUMNS
from steadycast.models.registry import SteadycastPluginWarning, available_models
from steadycast.ops.resources import children_cpu_s
from steadycast.pipeline import carry
from steadycast.pipeline.checking import Checked
from steadycast.pipeline.partition_work import PARTS, SCORES, PartitionWork, load_partition
from steadycast.pipeline.scope import RunScope, config_digest
from steadycast.pipeline.snapshot import Snapshot
from steadycast.storage import control, runlog, store
from steadycast.workspace import Workspace

__all__ = ["SCORE_METRICS", "Forecast", "clip_to_range", "forecast"]

#: The backtest metrics kept per series, model and window (besides ``coverage_L`` per level).
SCORE_METRICS = ("mase", "smape", "rmsse")


@dataclass(frozen=True)
class Forecast:
    """What the forecast stage hands to the gate: every series' forecast (or carried-over
    one) with its provenance, the backtest scores, the plugins that failed, and the figures
    the run records (``detail``: tiers, series left without a forecast). Empty when the
    checks stopped the run."""

    forecasts: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["unique_id", "ds", "yhat", "model"])
    )
    provenance: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["unique_id", "model", "source"])
    )
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    plugin_messages: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


def forecast(
    scope: RunScope,
    snap: Snapshot,
    checked: Checked,
    last_published: pd.DataFrame | None,
    pool: PartitionPool,
    *,
    resume: bool,
) -> Forecast:
    """Forecast stage: plan the tiers, forecast every partition (reusing an interrupted run's
    partitions when ``resume``), carry over excluded series, keep the explanations."""
    cfg = scope.cfg
    resume_from = (
        _resumable_run(scope.ws.control_path, cfg.name, scope.run_id, config_digest(cfg), snap)
        if resume
        else None  # an approved run resumes from its own committed partitions
    )
    tier_plan = tiers.plan(cfg, checked.series_in - len(checked.excluded), checked.mean_points)
    detail: dict[str, Any] = {"tiers": tier_plan.as_dict()}
    forecasts, provenance, score_files, plugin_messages = _forecast_partitions(
        scope, tiers.applied(cfg, tier_plan), snap, checked, last_published, pool, resume_from
    )
    if "tier" in provenance:
        by_tier = provenance["tier"].value_counts().sort_index()
        detail["tiers"]["series_by_tier"] = {str(k): int(v) for k, v in by_tier.items()}
    forecasts, provenance, detail["excluded_without_forecast"] = carry.carry_over(
        forecasts, provenance, checked.excluded, last_published
    )
    scope.result.series = int(provenance["unique_id"].nunique())
    scope.result.fallback_series = int(provenance["source"].isin(["fallback", "none"]).sum())
    detail.update(covariate_fallbacks(provenance))
    detail.update(unseen_series(provenance))
    _store_explanations(scope.ws, cfg.name, scope.run_id, score_files, provenance)
    return Forecast(forecasts, provenance, _read_scores(score_files), plugin_messages, detail)


def _resumable_run(
    control_path: Path, pipeline: str, run_id: str, config_sha: str, snap: Snapshot
) -> Path | None:
    """The directory of an interrupted run of the same pipeline on the same snapshot and config.

    A run killed part-way leaves its finished partitions on disk; the next run reuses them, so
    it restarts from the last finished partition and still produces the same release.
    """
    with control.connect(control_path) as con:
        row = con.execute(
            "SELECT run_id FROM runs WHERE pipeline = ? AND run_id <> ? AND status = 'failed' "
            "AND error LIKE 'interrupted%' AND config_sha256 = ? AND snapshot_sha256 = ? "
            "ORDER BY started_at DESC LIMIT 1",
            (pipeline, run_id, config_sha, snap.sha256),
        ).fetchone()
    return None if row is None else control_path.parent / "runs" / row["run_id"]


def _forecast_partitions(
    scope: RunScope,
    cfg: PipelineConfig,
    snap: Snapshot,
    checked: Checked,
    last_published: pd.DataFrame | None,
    pool: PartitionPool,
    resume_from: Path | None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[Path], list[str]]:
    """The measured stage: run the partitions, then gather what was committed: the forecasts
    and provenance, and the paths of the backtest scores (read only where needed)."""
    # Resolved, because an engine's executors may be other machines: a runs/ directory that is
    # a symlink to shared storage must reach them as the shared path.
    run_dir = scope.run_dir.resolve()
    names = sorted({p.parent.name for p in snap.parts})  # "part=K", one per snapshot directory
    with scope.stage("forecast") as rec, warnings.catch_warnings(record=True) as caught:
        # A broken plugin is recorded with the run (and skipped), never a crash.
        warnings.simplefilter("always", SteadycastPluginWarning)
        if cfg.models.plugins:
            available_models(plugins=True, disabled=cfg.models.disabled_plugins)
        work = PartitionWork(cfg, run_dir / PARTS, frozenset(checked.excluded), dict(checked.cuts))
        ran = _run_engine(scope, work, snap, names, last_published, pool, resume_from, rec)
        forecasts, provenance, score_files = _gather(work, snap, names, checked, rec)
        plugin_messages = sorted(
            {str(w.message) for w in caught if issubclass(w.category, SteadycastPluginWarning)}
        )
        rec.detail.update(ran, plugin_failures=plugin_messages)
        _check_parity(rec, checked)
    return forecasts, provenance, score_files, plugin_messages


def _run_engine(
    scope: RunScope,
    work: PartitionWork,
    snap: Snapshot,
    names: list[str],
    last_published: pd.DataFrame | None,
    pool: PartitionPool,
    resume_from: Path | None,
    rec: runlog.StageRecord,
) -> dict[str, Any]:
    """Commit every partition not committed yet, on the pipeline's engine, and account for the
    processes that did it (model workers and, on a cluster, executors are not this one).
    Returns the stage's engine figures."""
    cfg, parts_root = work.cfg, work.parts_root
    resumed = _resume_partitions(parts_root, resume_from, names)
    todo = [name for name in names if not is_committed(parts_root / name)]
    engine = create_engine(cfg.engine, cfg.name, pool)

    def advance(done: int, total: int) -> None:
        # Resumed partitions count as done.
        scope.advance("forecast", len(names) - total + done, len(names))

    scratch = parts_root.parent / "engine"
    snapshot = snap.parts[0].parent.parent.resolve()
    job = Job(cfg.name, snapshot, todo, work, cfg.forecast, last_published, scratch)
    reaped_before, counted_before = children_cpu_s(), pool.reported_cpu_s
    ran: EngineRun = engine.run(job, advance)
    # The partition processes are done: let their memory go before the outputs are gathered.
    pool.close()
    clear_staging(parts_root)
    shutil.rmtree(scratch, ignore_errors=True)
    _check_committed(cfg.name, engine.name, todo, ran.reports, parts_root)
    usage = total_usage(ran.reports)
    rec.extra_cpu_s = _unseen_cpu_s(
        sum(u.cpu_s for u in usage.values()) + ran.cpu_s,
        children_cpu_s() - reaped_before,
        counted_before,
    )
    rec.extra_peak_mb = max([u.peak_rss_mb for u in usage.values()] + [ran.peak_rss_mb])
    runlog.record_model_usage(scope.ws.control_path, scope.run_id, usage)
    return {
        "resumed_partitions": resumed,
        "engine": {"name": engine.name, **ran.detail},
        "retried_partitions": sum(r.attempt > 0 for r in ran.reports),
    }


def _unseen_cpu_s(reported: float, reaped: float, counted_before: float) -> float:
    """What the stage adds to its own measure (this process and the children it reaped) to
    count each process's CPU once: ``reported`` is what the processes that worked for it said
    they used (partition processes, model workers, Spark's executors), ``reaped`` the whole
    lives of the processes reaped during the stage, ``counted_before`` what earlier stages
    already counted of those (the check stage's calls in the same partition processes).
    Work that was not reaped here (executors on other machines) is the reported part that
    reaping does not cover."""
    not_reaped = max(0.0, reported - (reaped - counted_before))
    return not_reaped - counted_before


def _resume_partitions(parts_root: Path, resume_from: Path | None, names: list[str]) -> int:
    """Commit copies of the partitions an interrupted run finished; returns how many."""
    if resume_from is None:
        return 0
    resumed = 0
    for name in names:
        previous = resume_from / PARTS / name
        if is_committed(previous) and not is_committed(parts_root / name):
            copy_committed(previous, parts_root / name)
            resumed += 1
    return resumed


def _check_committed(
    pipeline: str, engine: str, todo: list[str], reports: list[TaskReport], parts_root: Path
) -> None:
    """Every partition an engine was given is committed, or had no series left to forecast."""
    empty = {r.part for r in reports if r.status == "empty"}
    missing = [p for p in todo if p not in empty and not is_committed(parts_root / p)]
    if missing:
        raise SteadycastError(
            f"forecast stage of pipeline {pipeline!r}: the {engine} engine finished without "
            f"committed outputs for {len(missing)} partition(s) ({', '.join(missing[:5])}); "
            "run it again to resume"
        )


def _gather(
    work: PartitionWork,
    snap: Snapshot,
    names: list[str],
    checked: Checked,
    rec: runlog.StageRecord,
) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    """Every committed partition's forecasts and provenance in one frame each, and the paths of
    their scores; ``rec`` gets the stage's figures."""
    cfg, parts_root = work.cfg, work.parts_root
    rec.rows_in = sum(pq.ParquetFile(p).metadata.num_rows for p in snap.parts)
    rec.series_in = checked.figures.series
    loaded = [load_partition(parts_root / n) for n in names if is_committed(parts_root / n)]
    if not loaded:
        raise SteadycastError(
            f"every series of pipeline {cfg.name!r} was excluded by its checks; nothing to forecast"
        )
    reports = [report for _, report in loaded]
    forecasts = pd.concat([o.forecasts for o, _ in loaded], ignore_index=True)
    provenance = pd.concat([o.provenance for o, _ in loaded], ignore_index=True)
    score_files = [parts_root / n / SCORES for n in names if (parts_root / n / SCORES).exists()]
    rec.detail["clipped_to_range"] = clip_to_range(forecasts, cfg)
    rec.series_out = int(provenance["unique_id"].nunique())
    rec.rows_out = len(forecasts)
    rec.rows_rejected = sum(int(r["rows_rejected"].iloc[0]) for r in reports if len(r))
    # Summed per partition: a concat would trip over all-empty columns read from Parquet.
    rec.detail["prepared"] = {
        "excluded_series": len(checked.excluded),
        "filled_points": sum(int(r["filled"].sum()) for r in reports),
        "series_cut_after_long_gap": sum(int(r["cut_before"].notna().sum()) for r in reports),
    }
    return forecasts, provenance, score_files


def _check_parity(rec: runlog.StageRecord, checked: Checked) -> None:
    """Every series that went in is forecast or excluded by the checks."""
    excluded_in = len(set(checked.excluded))
    if rec.series_out + excluded_in != rec.series_in:
        raise ParityError(
            f"forecast stage: {rec.series_in} series in, but {rec.series_out} forecast and "
            f"{excluded_in} excluded"
        )


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


def _score_columns(files: list[Path]) -> set[str]:
    return {name for f in files for name in pq.read_schema(f).names}


def _score_metrics(names: set[str]) -> list[str]:
    return sorted(n for n in names if n in SCORE_METRICS or n.startswith("coverage_"))


def _read_scores(files: list[Path]) -> pd.DataFrame:
    """Every partition's backtest scores in one frame, strings as categories: about 60 bytes a
    row, so the scores of a million series fit beside their forecasts."""
    if not files:
        return pd.DataFrame()
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    return table.to_pandas(strings_to_categorical=True)


# The store's ``series_provenance`` columns: a series' provenance as the forecast stage made it
# (its forecast's length aside), with its run and tier.
STORED_PROVENANCE = [
    "pipeline",
    "run_id",
    *(c for c in PROVENANCE_COLUMNS if c != "steps"),
    "tier",
]


def _store_explanations(
    ws: Workspace, pipeline: str, run_id: str, score_files: list[Path], provenance: pd.DataFrame
) -> None:
    """Keep every backtest score and each series' provenance, so a choice can be explained.
    The scores go from the partitions' files to the store in long form (a metric a row)
    without passing through this process."""
    prov = provenance.copy()
    if "tier" not in prov:
        prov["tier"] = None
    prov.insert(0, "run_id", run_id)
    prov.insert(0, "pipeline", pipeline)
    prov = prov[STORED_PROVENANCE]
    with store.writing(ws.store_path) as con:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM backtest_scores WHERE run_id = ?", [run_id])
        con.execute("DELETE FROM series_provenance WHERE run_id = ?", [run_id])
        columns = _score_columns(score_files)
        metrics = _score_metrics(columns)
        if metrics:
            wide = ", ".join(f'CAST("{m}" AS DOUBLE) AS "{m}"' for m in metrics)
            cutoff = "cutoff" if "cutoff" in columns else "NULL"
            con.execute(
                "INSERT INTO backtest_scores "
                '(pipeline, run_id, unique_id, model, "window", status, cutoff, metric, value) '
                'WITH wide AS (SELECT unique_id, model, "window", status, '
                f"CAST({cutoff} AS TIMESTAMP) AS cutoff, "
                f"{wide} FROM read_parquet(?, union_by_name = true)) "
                'SELECT ?, ?, unique_id, model, "window", status, cutoff, metric, value FROM wide '
                "UNPIVOT INCLUDE NULLS (value FOR metric IN ("
                + ", ".join(f'"{m}"' for m in metrics)
                + "))",
                [[str(f) for f in score_files], pipeline, run_id],
            )
        con.register("prov_df", prov)
        con.execute("INSERT INTO series_provenance SELECT * FROM prov_df")
        con.unregister("prov_df")
        con.execute("COMMIT")
