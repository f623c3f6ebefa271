"""One run of a pipeline: snapshot, prepare, backtest and select, forecast, publish.

The run takes the pipeline lock, reads a snapshot of its observations into Parquet partitions
(holding the store only for that read), works partition by partition with model code isolated in
worker processes, and writes one immutable release. Every stage is measured and recorded in the
control plane as it goes, so a run that dies leaves a record of where and why.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import re
import secrets
import shutil
import traceback
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from steadycast.config import AlertsConfig, EngineConfig, PipelineConfig
from steadycast.engines import Job, TaskReport, check_engine, create_engine
from steadycast.engines.base import (
    ModelRunner,
    total_usage,
    usage_as_dict,
    usage_from_dict,
    usage_since,
)
from steadycast.engines.commit import (
    clear_staging,
    commit,
    copy_committed,
    failpoint,
    is_committed,
    staging_dir,
)
from steadycast.engines.local import read_partition
from steadycast.engines.pool import PartitionPool, ProcessesUsage, processes_for
from steadycast.errors import (
    ConfigError,
    NotFoundError,
    ParityError,
    SteadycastError,
    UsageError,
)
from steadycast.forecasting import tiers
from steadycast.forecasting.forecast import PartitionResult, run_partition
from steadycast.forecasting.prepare import regularize
from steadycast.ingestion.timegrid import TIME_RANGE, in_range_sql
from steadycast.models.registry import SteadycastPluginWarning, available_models, create_model
from steadycast.ops import advice, alerts, incidents, watch
from steadycast.ops.incidents import Finding
from steadycast.ops.logging import run_context
from steadycast.pipeline import carry
from steadycast.quality import checks, gate, remedy
from steadycast.quality.checks import CheckResult, RunFigures
from steadycast.storage import control, releases, runlog, store
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


def config_lines(cfg: PipelineConfig) -> list[str]:
    """The configuration as recorded with a run and diffed into the audit log: webhook URLs
    carry their secret in the path, so only their redacted form is kept."""
    urls = [alerts.redact_url(u) for u in cfg.alerts.webhook_url]
    shown = cfg.model_copy(update={"alerts": cfg.alerts.model_copy(update={"webhook_url": urls})})
    return shown.model_dump_json(indent=1).splitlines()


def _snapshot(
    ws: Workspace, cfg: PipelineConfig, run_dir: Path, record: runlog.StageRecord
) -> list[Path]:
    """Copy the pipeline's observations into Parquet partitions of series, then let go."""
    target = run_dir / "snapshot"
    shutil.rmtree(target, ignore_errors=True)
    with store.reading(
        ws.store_path, memory_limit=cfg.ingest.memory_limit, temp_dir=ws.temp_dir
    ) as con:
        # Rows stored by an older version with a time the forecast cannot hold (year 1, 9999)
        # are left out, counted and named, instead of failing every run.
        ok = in_range_sql("ds")
        usable = f"pipeline = ? AND {ok}"
        row = con.execute(
            f"SELECT count(*) FILTER (WHERE NOT {ok}), count(*) FILTER (WHERE {ok}), "
            f"count(DISTINCT unique_id) FILTER (WHERE {ok}), max(ds) FILTER (WHERE {ok}) "
            "FROM observations WHERE pipeline = ?",
            [cfg.name],
        ).fetchone()
        excluded, rows, series = (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)
        record.detail["newest"] = str(row[3]) if row and row[3] is not None else None
        if excluded:
            named = [
                str(r[0])
                for r in con.execute(
                    f"SELECT DISTINCT unique_id FROM observations WHERE pipeline = ? AND NOT {ok} "
                    "ORDER BY 1 LIMIT 5",
                    [cfg.name],
                ).fetchall()
            ]
            record.rows_rejected = excluded
            record.detail["excluded"] = {
                "reason": "time_out_of_range",
                "rows": excluded,
                "series": named,
                "why": f"{excluded} stored row(s) (series {', '.join(named)}) have a time outside "
                f"{TIME_RANGE}, which a forecast cannot hold; they are left out of the run and "
                "the rest of each series is used",
            }
            log.warning("%s: %s", cfg.name, record.detail["excluded"]["why"])
        batches = con.execute(
            "SELECT batch_id FROM batches WHERE pipeline = ? ORDER BY batch_id", [cfg.name]
        ).fetchall()
        if series:
            parts = max(1, math.ceil(series / cfg.forecast.partition_size))
            target.mkdir(parents=True)
            # hash() is deterministic, so a series lands in the same partition on every engine.
            con.execute(
                f"COPY (SELECT unique_id, ds, y, CAST(hash(unique_id) % {parts} AS INTEGER) AS part "
                f"FROM observations WHERE {usable} ORDER BY part, unique_id, ds) "
                f"TO '{target}' (FORMAT parquet, PARTITION_BY (part))",
                [cfg.name],
            )
    record.rows_in, record.rows_out = rows + excluded, rows
    record.series_in = record.series_out = series
    record.detail["snapshot_sha256"] = hashlib.sha256(
        ",".join(b[0] for b in batches).encode()
    ).hexdigest()
    return sorted(target.glob("part=*/*.parquet")) if series else []


def _read_partition(directory: Path) -> pd.DataFrame:
    """One partition's snapshot rows: every file of its directory (DuckDB writes a large
    partition as several files, and a series may continue from one file into the next)."""
    frame = read_partition(directory)
    frame["unique_id"] = frame["unique_id"].astype(str)
    frame["ds"] = frame["ds"].astype("datetime64[ns]")
    return frame


def forecast_one_partition(
    history: pd.DataFrame, cfg: PipelineConfig, runner: Any, last_published: pd.DataFrame | None
) -> tuple[PartitionResult, pd.DataFrame]:
    """Prepare and forecast one partition: the engine-neutral unit of work."""
    max_fill = max(cfg.series.horizon, cfg.series.season_length)
    prepared, report = regularize(history, cfg.series.frequency, max_fill=max_fill)
    results = []
    for tier, tier_cfg, subset in tiers.split(prepared, cfg):
        out = run_partition(subset, tier_cfg, runner, last_published)
        results.append(replace(out, provenance=out.provenance.assign(tier=tier)))
    return remedy.remedy(_merged(results), prepared, cfg), report


def _merged(results: list[PartitionResult]) -> PartitionResult:
    if len(results) == 1:
        return results[0]

    def cat(frames: list[pd.DataFrame]) -> pd.DataFrame:
        kept = [f for f in frames if not f.empty]
        return pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()

    return PartitionResult(
        forecasts=cat([r.forecasts for r in results]),
        provenance=cat([r.provenance for r in results]),
        scores=cat([r.scores for r in results]),
        selection=cat([r.selection for r in results]),
        profile=cat([r.profile for r in results]),
    )


#: The backtest metrics kept per series, model and window (besides ``coverage_L`` per level).
SCORE_METRICS = ("mase", "smape", "rmsse")


def _score_metrics(files: list[Path]) -> list[str]:
    names = {name for f in files for name in pq.read_schema(f).names}
    return sorted(n for n in names if n in SCORE_METRICS or n.startswith("coverage_"))


def _read_scores(files: list[Path]) -> pd.DataFrame:
    """Every partition's backtest scores in one frame, strings as categories: about 60 bytes a
    row, so the scores of a million series fit beside their forecasts."""
    if not files:
        return pd.DataFrame()
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    return table.to_pandas(strings_to_categorical=True)


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
            "tier",
        ]
    ]
    with store.writing(ws.store_path) as con:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM backtest_scores WHERE run_id = ?", [run_id])
        con.execute("DELETE FROM series_provenance WHERE run_id = ?", [run_id])
        metrics = _score_metrics(score_files)
        if metrics:
            wide = ", ".join(f'CAST("{m}" AS DOUBLE) AS "{m}"' for m in metrics)
            con.execute(
                "INSERT INTO backtest_scores "
                'WITH wide AS (SELECT unique_id, model, "window", status, '
                f"{wide} FROM read_parquet(?, union_by_name = true)) "
                'SELECT ?, ?, unique_id, model, "window", status, metric, value FROM wide '
                "UNPIVOT INCLUDE NULLS (value FOR metric IN ("
                + ", ".join(f'"{m}"' for m in metrics)
                + "))",
                [[str(f) for f in score_files], pipeline, run_id],
            )
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


def _previous_run(control_path: Path, pipeline: str, run_id: str) -> dict[str, Any] | None:
    """The last finished run of the pipeline before this one (for volume parity and config diff)."""
    with control.connect(control_path) as con:
        row = con.execute(
            "SELECT * FROM runs WHERE pipeline = ? AND run_id <> ? AND status IN ('published', 'held') "
            "ORDER BY started_at DESC LIMIT 1",
            (pipeline, run_id),
        ).fetchone()
    if row is None:
        return None
    run = dict(row)
    run["detail"] = json.loads(run["detail"]) if run.get("detail") else {}
    return run


def _audit_config_change(
    ws: Workspace, cfg: PipelineConfig, previous: dict[str, Any] | None, run_id: str
) -> None:
    """A pipeline file that changed since the last run goes to the audit log with its diff."""
    now = config_lines(cfg)
    before = (previous or {}).get("detail", {}).get("config")
    if before is None or before == now:
        return
    diff = list(difflib.unified_diff(before, now, "previous run", "this run", lineterm="", n=1))
    control.audit(
        ws.control_path,
        "config.changed",
        pipeline=cfg.name,
        subject=run_id,
        detail={"previous_run": previous["run_id"] if previous else None, "diff": diff},
    )


def run_pipeline(
    ws: Workspace,
    pipeline: str,
    *,
    progress: Progress | None = None,
    engine: str | None = None,
    spark_master: str | None = None,
) -> RunResult:
    """Run a pipeline end to end; the result says what happened (it also records it).

    ``engine`` ("local" or "spark") and ``spark_master`` override the pipeline's ``[engine]``
    table for this run; the release is the same on either engine.
    """
    cfg = _choose_engine(ws.pipeline(pipeline), engine, spark_master)
    _check_candidates(cfg)
    check_engine(cfg.engine, cfg.name)
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
            trace = traceback.format_exc(limit=20)
            _record_failure(ws, pipeline, run_id, result, trace, alerts_config=cfg.alerts)
            exc.add_note(
                f"in run {run_id}; its traceback is kept in the run's record: "
                f"{advice.command(ws.root, 'runs', pipeline, '--json')}"
            )
            raise
        finally:
            result.stages = [r.as_dict() for r in records if r.usage is not None]
        if result.error is not None and result.status != "held":
            _record_failure(ws, pipeline, run_id, result, alerts_config=cfg.alerts)
        else:
            _failure_over(ws, cfg, run_id)
    return result


def _choose_engine(
    cfg: PipelineConfig, engine: str | None, spark_master: str | None
) -> PipelineConfig:
    """The pipeline's config with the engine the caller chose for this run, if any."""
    if engine is None and spark_master is None:
        return cfg
    chosen = cfg.engine.model_dump()
    if engine is not None:
        if engine not in ("local", "spark"):
            raise UsageError(f"engine {engine!r} is not an engine; use local or spark")
        chosen["name"] = engine
    if spark_master is not None:
        if chosen["name"] != "spark":
            raise UsageError(
                f"a Spark master ({spark_master!r}) was given, but pipeline {cfg.name!r} runs on "
                f"the {chosen['name']} engine; choose the spark engine too (--engine spark)"
            )
        chosen["spark_master"] = spark_master
    return cfg.model_copy(update={"engine": EngineConfig(**chosen)})


def _check_candidates(cfg: PipelineConfig) -> None:
    """An unknown model name or a bad parameter is a configuration error before the run starts,
    not a failure found in every worker task later."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SteadycastPluginWarning)
        tiers_used = {"candidates": cfg.models.tier != "fast"}
        tiers_used["fast_candidates"] = cfg.models.tier != "full"
        for key, used in tiers_used.items():
            for name in getattr(cfg.models, key) if used else []:
                try:
                    create_model(name, cfg.models.params.get(name))
                except ConfigError as exc:
                    raise ConfigError(f"pipelines/{cfg.name}.toml: models.{key}: {exc}") from None


def _record_failure(
    ws: Workspace,
    pipeline: str,
    run_id: str,
    result: RunResult,
    trace: str | None = None,
    *,
    alerts_config: AlertsConfig | None = None,
) -> None:
    """A failed run says so in its record and in the audit log, with the error (and, for an
    internal error, the traceback), so nobody has to re-run it to learn what happened; and it
    opens (or updates) the pipeline's ``failed`` incident and alerts through the pipeline's
    channels, so a failure at 3 a.m. reaches a person."""
    result.status = "failed"
    fields: dict[str, Any] = {"detail": {"traceback": trace}} if trace else {}
    runlog.update_run(
        ws.control_path,
        run_id,
        status="failed",
        finished_at=control.utcnow(),
        error=result.error,
        **fields,
    )
    control.audit(
        ws.control_path, "run.failed", pipeline=pipeline, subject=run_id, reason=result.error
    )
    error = result.error or "unknown error"
    try:
        finding = incidents.failed_finding(pipeline, run_id, error)
        if alerts_config is None:
            incidents.record_findings(ws.control_path, pipeline, run_id, [finding], [])
        else:
            watch.record_and_notify(ws, alerts_config, pipeline, run_id, [finding], [])
    except Exception as exc:  # the run's own error is what must be reported; this is secondary
        log.warning("run %s: could not open its incident: %s: %s", run_id, type(exc).__name__, exc)


def _failure_over(ws: Workspace, cfg: PipelineConfig, run_id: str) -> None:
    """A run that finished (published or held) resolves the pipeline's ``failed`` incident;
    the run's own outcome stands even if that cannot be recorded."""
    try:
        changes = incidents.record_findings(ws.control_path, cfg.name, run_id, [], ["failed"])
    except Exception as exc:
        log.warning("run %s: could not resolve the failed incident: %s", run_id, exc)
        return
    if changes.resolved:
        alerts.notify(cfg.alerts, changes, ws.control_path, cfg.name, run_id)


@dataclass
class _Checked:
    """What the run keeps of its checks: the failed series-level results and every run-level
    one (all series-level results, passed ones included, are stored from ``stored``)."""

    results: list[CheckResult]
    figures: RunFigures
    nonnegative: set[str]
    excluded: dict[str, list[str]]
    cuts: dict[str, pd.Timestamp]
    stored: list[Path]  # Parquet files of every series-level result, one per partition


@dataclass(frozen=True)
class _PartitionChecks:
    failed: list[CheckResult]
    figures: RunFigures
    nonnegative: set[str]
    rows: int
    series: int


@dataclass(frozen=True)
class _CheckPartition:
    """The checks of one partition, as a partition process runs them (picklable). Every result
    goes to ``out``; only the failed ones come back, so the run never holds a million series'
    passed results."""

    directory: Path
    specs: dict[str, checks.CheckSpec]
    ctx: checks.CheckContext
    out: Path

    def __call__(self) -> _PartitionChecks:
        history = _read_partition(self.directory)
        found, figures = checks.check_series(history, self.specs, self.ctx)
        if found:
            checks.results_frame(found).to_parquet(self.out, index=False)
        return _PartitionChecks(
            [r for r in found if not r.passed],
            figures,
            gate.nonnegative_series(history),
            len(history),
            int(history["unique_id"].nunique()),
        )


def _delivered_after(previous: dict[str, Any] | None) -> pd.Timestamp | None:
    """Where the newest delivery starts, for the feed-fault check: after the newest data of the
    last published run. After a held run, the same point as that run used, so a delivery that
    held a run is judged again until a run publishes."""
    detail = (previous or {}).get("detail", {})
    at = detail.get("newest") if (previous or {}).get("status") == "published" else None
    at = at or detail.get("delivered_after")
    return pd.Timestamp(at) if at else None


def _check_stage(
    parts: list[Path],
    cfg: PipelineConfig,
    newest: pd.Timestamp | None,
    previous: dict[str, Any] | None,
    rec: runlog.StageRecord,
    pool: PartitionPool,
    out_dir: Path,
) -> _Checked:
    specs = dict(checks.build_specs(cfg))
    prev = (previous or {}).get("detail", {}).get("check_figures")
    delivered_after = _delivered_after(previous)
    rec.detail["delivered_after"] = delivered_after.isoformat() if delivered_after else None
    ctx = checks.CheckContext.from_config(
        cfg,
        newest=newest,
        previous=checks.RunFigures.from_dict(prev) if prev else None,
        delivered_after=delivered_after,
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    results: list[CheckResult] = []
    figures = checks.RunFigures()
    nonneg: set[str] = set()
    directories = {d.name: d for d in sorted({p.parent for p in parts})}
    used = ProcessesUsage()
    for done in pool.run(
        directories,
        lambda name: _CheckPartition(directories[name], specs, ctx, out_dir / f"{name}.parquet"),
    ):
        found = done.result
        rec.rows_in += found.rows
        rec.series_in += found.series
        results += found.failed
        figures = figures + found.figures
        nonneg |= found.nonnegative
        if pool.parallel:  # in this process, the stage measures it itself
            used.add(done)
    rec.extra_cpu_s, rec.extra_peak_mb = used.cpu_s, used.peak_rss_mb
    results += checks.check_run(figures, specs, ctx, results)
    excluded = checks.excluded_series(results)
    rec.rows_out = rec.rows_in
    rec.series_out = rec.series_in - len(excluded)
    rec.detail.update(
        failed=sum(not r.passed for r in results),
        excluded_series=len(excluded),
        stop=[r.sentence for r in checks.stop_results(results)],
        processes=pool.processes,
        partition_processes_peak_rss_mb=round(used.peak_rss_mb, 1),
    )
    cuts = checks.level_shift_cuts(results, specs)
    return _Checked(results, figures, nonneg, excluded, cuts, sorted(out_dir.glob("*.parquet")))


def _store_checks(ws: Workspace, pipeline: str, run_id: str, checked: _Checked) -> None:
    """Every result of the run's checks into the store: the partitions' files, then the
    run-level results (kept in memory: a handful)."""
    run_level = [r for r in checked.results if r.unique_id is None]
    frame = checks.results_frame(run_level, pipeline=pipeline, run_id=run_id)
    with store.writing(ws.store_path) as con:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM check_results WHERE run_id = ?", [run_id])
        if checked.stored:
            con.execute(
                "INSERT INTO check_results SELECT ?, ?, * FROM read_parquet(?)",
                [pipeline, run_id, [str(f) for f in checked.stored]],
            )
        if not frame.empty:
            con.register("checks_df", frame)
            con.execute("INSERT INTO check_results SELECT * FROM checks_df")
            con.unregister("checks_df")
        con.execute("COMMIT")
    for path in checked.stored:
        path.unlink(missing_ok=True)


def _plugin_findings(pipeline: str, messages: list[str]) -> list[Finding]:
    found = []
    for message in messages:
        match = re.search(r"model plugin '([^']+)'", message)
        found.append(
            incidents.plugin_finding(pipeline, match.group(1) if match else message[:60], message)
        )
    return found


def _execute(
    ws: Workspace,
    cfg: PipelineConfig,
    run_id: str,
    run_dir: Path,
    result: RunResult,
    records: list[runlog.StageRecord],
    progress: Progress | None,
    override: Override | None = None,
) -> None:
    """The stages of one run. With ``override`` (an approval of a run its data checks stopped),
    the run goes on from its own snapshot and checks, past the stop, and publishes whatever the
    output gate says (its results are recorded)."""
    pipeline = cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    if override is None:
        previous = _previous_run(ws.control_path, pipeline, run_id)
        _audit_config_change(ws, cfg, previous, run_id)
        detail: dict[str, Any] = {"config": config_lines(cfg)}
        detail["monitor"] = _watch_accuracy(ws, cfg, run_id)

        with runlog.stage(ws.control_path, run_id, "snapshot", 1) as rec:
            records.append(rec)
            parts = _snapshot(ws, cfg, run_dir, rec)
        newest = rec.detail.get("newest")
        snapshot_sha = rec.detail["snapshot_sha256"]
        runlog.update_run(ws.control_path, run_id, snapshot_sha256=snapshot_sha)
        if not parts:
            raise SteadycastError(
                f"pipeline {pipeline!r} has no stored observations; ingest data first: "
                f"`{advice.command(ws.root, 'ingest', pipeline, 'FILE')}`"
            )
    else:
        detail, parts, newest = override.detail, override.parts, override.newest

    # One process per core works on partitions, for the checks and then the forecasts.
    processes = processes_for(cfg.forecast.workers, len({p.parent for p in parts}))
    with PartitionPool(processes) as pool:
        if override is None:
            with runlog.stage(ws.control_path, run_id, "check", 2) as rec:
                records.append(rec)
                checked = _check_stage(
                    parts,
                    cfg,
                    pd.Timestamp(newest) if newest else None,
                    previous,
                    rec,
                    pool,
                    run_dir / "checks",
                )
            series_checked, mean_points = rec.series_in, rec.rows_in / max(1, rec.series_in)
            detail["check_figures"] = checked.figures.as_dict()
            detail["newest"] = str(newest) if newest else None
            detail["delivered_after"] = rec.detail.get("delivered_after")
            _store_checks(ws, pipeline, run_id, checked)
        else:
            checked = override.checked
            series_checked, mean_points = override.series_checked, override.mean_points
        stopped = checks.stop_results(checked.results)

        previous_release = releases.current(ws.releases_dir, pipeline)
        last_published = releases.read_forecasts(previous_release) if previous_release else None
        plugin_messages: list[str] = []
        forecasts = pd.DataFrame(columns=["unique_id", "ds", "yhat", "model"])
        provenance = pd.DataFrame(columns=["unique_id", "model", "source"])
        scores = pd.DataFrame()
        if not stopped:
            resume_from = (
                _resumable_run(ws.control_path, pipeline, run_id, config_digest(cfg), snapshot_sha)
                if override is None
                else None  # an approved run resumes from its own committed partitions
            )
            tier_plan = tiers.plan(cfg, series_checked - len(checked.excluded), mean_points)
            detail["tiers"] = tier_plan.as_dict()
            forecasts, provenance, score_files, plugin_messages = _forecast_stage(
                ws,
                tiers.applied(cfg, tier_plan),
                run_id,
                parts,
                checked,
                last_published,
                records,
                progress,
                pool,
                resume_from,
            )
            if "tier" in provenance:
                by_tier = provenance["tier"].value_counts().sort_index()
                detail["tiers"]["series_by_tier"] = {str(k): int(v) for k, v in by_tier.items()}
            forecasts, provenance, detail["excluded_without_forecast"] = carry.carry_over(
                forecasts, provenance, checked.excluded, last_published
            )
            result.series = int(provenance["unique_id"].nunique())
            result.fallback_series = int(provenance["source"].isin(["fallback", "none"]).sum())
            _store_explanations(ws, pipeline, run_id, score_files, provenance)
            scores = _read_scores(score_files)
    levels = list(cfg.models.levels)

    with runlog.stage(ws.control_path, run_id, "gate", 4) as rec:
        records.append(rec)
        rec.rows_in = rec.rows_out = len(forecasts)
        decision = gate.evaluate_gate(
            cfg.gate,
            forecasts,
            provenance,
            checked.results,
            last_published,
            checked.nonnegative,
            scores if not scores.empty else None,
        )
        rec.detail["passed"] = decision.passed
    result.gate = decision.as_json()
    detail["gate"] = [r.record() for r in decision.results]
    export = (
        forecasts[export_columns(forecasts, levels)]
        .sort_values(["unique_id", "ds"])
        .reset_index(drop=True)
        if len(forecasts)
        else forecasts
    )
    # Judged: the run's own copies can go before the release is written (gigabytes at a
    # million series).
    del forecasts, scores, last_published
    meta = {
        "levels": levels,
        "frequency": cfg.series.frequency,
        "horizon": cfg.series.horizon,
        "fallback_series": result.fallback_series,
    }

    findings = incidents.check_findings(pipeline, checked.results)
    findings += incidents.gate_findings(pipeline, decision)
    findings += _plugin_findings(pipeline, plugin_messages)
    kinds = ["check", "gate", "held", "plugin"]
    if override is not None:
        # The checks' incidents were raised by the stop; the approval resolves those of the
        # stop itself (``continue_stopped_run``). What the output gate finds now is recorded.
        meta.update(approved=True, approved_reason=override.reason)
        stop_rule = incidents.fingerprint("gate", "blocking_checks", pipeline)
        findings = [
            f for f in findings if f.kind in ("gate", "plugin") and f.fingerprint != stop_rule
        ]
        kinds = []
    if decision.passed or override is not None:
        with runlog.stage(ws.control_path, run_id, "publish", 5) as rec:
            records.append(rec)
            rec.rows_in = rec.rows_out = len(export)
            release = releases.write_release(
                ws.releases_dir, pipeline, run_id, export, meta, extras={"provenance": provenance}
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
            detail=detail,
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
    else:
        # Held: the current release stays; the forecasts are kept for inspection and approval.
        held_dir = run_dir / releases.HELD
        held_dir.mkdir(parents=True, exist_ok=True)
        export.to_parquet(held_dir / releases.FORECASTS, index=False)
        provenance.to_parquet(held_dir / "provenance.parquet", index=False)
        (held_dir / "meta.json").write_text(json.dumps(meta, default=str))
        result.status = "held"
        result.error = decision.summary()
        findings.append(incidents.held_finding(pipeline, run_id, decision.summary()))
        runlog.update_run(
            ws.control_path,
            run_id,
            status="held",
            finished_at=control.utcnow(),
            error=result.error,
            series=result.series,
            fallback_series=result.fallback_series,
            detail=detail,
        )
        control.audit(
            ws.control_path, "run.held", pipeline=pipeline, subject=run_id, reason=result.error
        )
    watch.record_and_notify(ws, cfg.alerts, pipeline, run_id, findings, kinds)
    newest_time = pd.Timestamp(newest).to_pydatetime() if newest else None
    watch.watch_sla(ws, cfg, run_id, datetime.now(UTC), newest=newest_time)


def _watch_accuracy(ws: Workspace, cfg: PipelineConfig, run_id: str) -> dict[str, Any]:
    """Score earlier releases against the actuals that arrived since (realised accuracy).

    Monitoring must never cost a forecast: an error here is logged and recorded, not raised.
    """
    if not cfg.monitor.enabled:
        return {}
    try:
        return watch.watch_accuracy(ws, cfg, run_id).as_dict()
    except Exception as exc:
        log.exception("realised-accuracy monitoring failed")
        return {"error": f"{type(exc).__name__}: {exc}"}


PARTS = "parts"
TASK_FILE = "task.json"  # a committed partition's series and model usage
SCORES = "scores.parquet"


def _resumable_run(
    control_path: Path, pipeline: str, run_id: str, config_sha: str, snapshot_sha: str
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
            (pipeline, run_id, config_sha, snapshot_sha),
        ).fetchone()
    return None if row is None else control_path.parent / "runs" / row["run_id"]


def _save_partition(
    out_dir: Path, result: PartitionResult, report: pd.DataFrame, task: dict[str, Any]
) -> bool:
    """Write one partition's outputs in a staging directory of this attempt's own, then commit
    it (``engines/commit.py``): a partition is done only when complete, and only once however
    many attempts of its task run. Returns whether this attempt's outputs are the committed ones.
    """
    staging = staging_dir(out_dir)
    result.forecasts.to_parquet(staging / "forecasts.parquet", index=False)
    failpoint("partition:mid-write", out_dir.parent)
    result.provenance.to_parquet(staging / "provenance.parquet", index=False)
    if not result.scores.empty:
        result.scores.to_parquet(staging / SCORES, index=False)
    report.to_parquet(staging / "report.parquet", index=False)
    (staging / TASK_FILE).write_text(json.dumps(task))
    won = commit(staging, out_dir)
    failpoint("partition:after-commit", out_dir.parent)
    return won


def _load_partition(out_dir: Path) -> tuple[PartitionResult, pd.DataFrame]:
    result = PartitionResult(
        forecasts=pd.read_parquet(out_dir / "forecasts.parquet"),
        provenance=pd.read_parquet(out_dir / "provenance.parquet"),
    )
    return result, pd.read_parquet(out_dir / "report.parquet")


def _as_history(frame: pd.DataFrame) -> pd.DataFrame:
    """A partition's snapshot rows in one form and one order, however an engine read them
    (a local Parquet read keeps the file's order, a Spark shuffle does not)."""
    frame = frame[["unique_id", "ds", "y"]].astype(
        {"unique_id": str, "ds": "datetime64[ns]", "y": "float64"}
    )
    return frame.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class _PartitionWork:
    """The forecast stage's unit of work as engines run it (``engines.PartitionTask``): one
    partition's history in, its outputs committed under ``parts_root``, a report out.

    Small and picklable, because an engine may ship it to other machines: of the checks it
    carries only what the per-series work needs, the excluded series and the window cuts.
    """

    cfg: PipelineConfig
    parts_root: Path
    excluded: frozenset[str]
    cuts: dict[str, pd.Timestamp]

    def committed(self, part: str) -> TaskReport | None:
        out_dir = self.parts_root / part
        if not is_committed(out_dir):
            return None
        task_file = out_dir / TASK_FILE
        task = json.loads(task_file.read_text()) if task_file.exists() else {}
        usage = usage_from_dict(task.get("usage", {}))
        return TaskReport(part, "committed", int(task.get("series", 0)), usage)

    def __call__(
        self,
        part: str,
        history: pd.DataFrame,
        last_published: pd.DataFrame | None,
        runner: ModelRunner,
    ) -> TaskReport:
        earlier = self.committed(part)
        if earlier is not None:  # a retried or duplicate attempt: the first commit stands
            return earlier
        history, rejected = _apply_check_policies(_as_history(history), self.excluded, self.cuts)
        if history.empty:
            return TaskReport(part, "empty")
        last = None
        if last_published is not None:
            last = last_published[last_published["unique_id"].isin(history["unique_id"].unique())]
        before = runner.usage()
        result, report = forecast_one_partition(history, self.cfg, runner, last)
        usage = usage_since(before, runner.usage())
        # Rows set aside by the checks' policies, per partition, for parity.
        report = report.assign(rows_rejected=rejected)
        series = int(result.provenance["unique_id"].nunique())
        task = {"series": series, "usage": usage_as_dict(usage)}
        if _save_partition(self.parts_root / part, result, report, task):
            return TaskReport(part, "forecast", series, usage)
        return self.committed(part) or TaskReport(part, "committed", series)


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


def _forecast_stage(
    ws: Workspace,
    cfg: PipelineConfig,
    run_id: str,
    parts: list[Path],
    checked: _Checked,
    last_published: pd.DataFrame | None,
    records: list[runlog.StageRecord],
    progress: Progress | None,
    pool: PartitionPool,
    resume_from: Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[Path], list[str]]:
    """Forecast every partition on the pipeline's engine, then gather what was committed: the
    forecasts and provenance, and the paths of the backtest scores (read only where needed).

    The engine only runs ``_PartitionWork`` where it chooses; resumption, accounting, parity
    and the release's inputs are decided here, the same way for every engine.
    """
    # Resolved, because an engine's executors may be other machines: a runs/ directory that is
    # a symlink to shared storage must reach them as the shared path.
    run_dir = (ws.root / "runs" / run_id).resolve()
    parts_root = run_dir / PARTS
    snapshot = parts[0].parent.parent.resolve()
    names = sorted({p.parent.name for p in parts})  # "part=K", one per snapshot directory
    with (
        runlog.stage(ws.control_path, run_id, "forecast", 3) as rec,
        warnings.catch_warnings(record=True) as caught,
    ):
        # A broken plugin is recorded with the run (and skipped), never a crash.
        warnings.simplefilter("always", SteadycastPluginWarning)
        records.append(rec)
        if cfg.models.plugins:
            available_models(plugins=True, disabled=cfg.models.disabled_plugins)
        resumed = _resume_partitions(parts_root, resume_from, names)
        todo = [name for name in names if not is_committed(parts_root / name)]
        engine = create_engine(cfg.engine, cfg.name, pool)

        def advance(done: int, total: int) -> None:
            if progress:  # resumed partitions count as done
                progress("forecast", len(names) - total + done, len(names))

        work = _PartitionWork(cfg, parts_root, frozenset(checked.excluded), dict(checked.cuts))
        scratch = run_dir / "engine"
        job = Job(cfg.name, snapshot, todo, work, cfg.forecast, last_published, scratch)
        ran = engine.run(job, advance if progress else None)
        # The partition processes are done: let their memory go before the outputs are gathered.
        pool.close()
        clear_staging(parts_root)
        shutil.rmtree(scratch, ignore_errors=True)
        _check_committed(cfg.name, engine.name, todo, ran.reports, parts_root)
        usage = total_usage(ran.reports)
        # Model workers, and on a cluster the executors, are not this process: add them.
        rec.extra_cpu_s = sum(u.cpu_s for u in usage.values()) + ran.cpu_s
        rec.extra_peak_mb = max([u.peak_rss_mb for u in usage.values()] + [ran.peak_rss_mb])
        runlog.record_model_usage(ws.control_path, run_id, usage)
        rec.rows_in = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        rec.series_in = checked.figures.series
        loaded = [_load_partition(parts_root / n) for n in names if is_committed(parts_root / n)]
        if not loaded:
            raise SteadycastError(
                f"every series of pipeline {cfg.name!r} was excluded by its checks; nothing to forecast"
            )
        outputs = [result for result, _ in loaded]
        reports = [report for _, report in loaded]
        forecasts = pd.concat([o.forecasts for o in outputs], ignore_index=True)
        provenance = pd.concat([o.provenance for o in outputs], ignore_index=True)
        score_files = [parts_root / n / SCORES for n in names if (parts_root / n / SCORES).exists()]
        rec.detail["clipped_to_range"] = clip_to_range(forecasts, cfg)
        plugin_messages = sorted(
            {str(w.message) for w in caught if issubclass(w.category, SteadycastPluginWarning)}
        )
        rec.detail["plugin_failures"] = plugin_messages
        rec.detail["resumed_partitions"] = resumed
        rec.detail["engine"] = {"name": engine.name, **ran.detail}
        rec.detail["retried_partitions"] = sum(r.attempt > 0 for r in ran.reports)
        rec.series_out = int(provenance["unique_id"].nunique())
        rec.rows_out = len(forecasts)
        rec.rows_rejected = sum(int(r["rows_rejected"].iloc[0]) for r in reports if len(r))
        # Summed per partition: a concat would trip over all-empty columns read from Parquet.
        rec.detail["prepared"] = {
            "excluded_series": len(checked.excluded),
            "filled_points": sum(int(r["filled"].sum()) for r in reports),
            "series_cut_after_long_gap": sum(int(r["cut_before"].notna().sum()) for r in reports),
        }
        excluded_in = len(set(checked.excluded))
        if rec.series_out + excluded_in != rec.series_in:
            raise ParityError(
                f"forecast stage: {rec.series_in} series in, but {rec.series_out} forecast and "
                f"{excluded_in} excluded"
            )
    return forecasts, provenance, score_files, plugin_messages


def _apply_check_policies(
    history: pd.DataFrame, excluded: Collection[str], cuts: Mapping[str, pd.Timestamp]
) -> tuple[pd.DataFrame, int]:
    """Leave out excluded series; start shifted series' training windows after their shift.
    Returns the rows left and how many were set aside (counted as rejected, for parity)."""
    before = len(history)
    if excluded:
        history = history[~history["unique_id"].isin(excluded)]
    if cuts:
        starts = history["unique_id"].map(cuts)
        history = history[~(starts.notna() & (history["ds"] < starts))]
    return history.reset_index(drop=True), before - len(history)


# ----------------------------------------------------------------------------------------------
# Approval of a run its data checks stopped: the run goes on past the stop
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Override:
    """A person's approval of a run its data checks stopped, with what the run needs to go on
    from where the stop left it: its own snapshot, its checks' results with the stop lifted,
    and its record.

    Lifted: every failed result of the checks that stopped the run (``checks``), so those
    checks neither hold the run nor exclude series; other checks' exclusions stay."""

    reason: str
    actor: str | None
    checks: tuple[str, ...]
    lifted: tuple[CheckResult, ...]  # the failed results whose stop or exclusion is lifted
    checked: _Checked
    parts: list[Path]
    newest: str | None
    series_checked: int
    mean_points: float
    detail: dict[str, Any]


def _stored_check_results(ws: Workspace, run_id: str) -> list[CheckResult]:
    """What a run's checks found, as the run recorded it: every failed result and every
    run-level one (the same results the run judged, not the checks run again today)."""
    with store.reading(ws.store_path, temp_dir=ws.temp_dir) as con:
        rows = con.execute(
            'SELECT "check", passed, severity, blocking, policy, unique_id, sentence, value, '
            'threshold, "at" FROM check_results '
            "WHERE run_id = ? AND (NOT passed OR unique_id IS NULL)",
            [run_id],
        ).fetchall()
    return [
        CheckResult(
            str(name),
            bool(passed),
            severity,
            bool(blocking),
            policy,
            None if uid is None else str(uid),
            str(sentence),
            value,
            threshold,
            None if at is None else pd.Timestamp(at),
        )
        for name, passed, severity, blocking, policy, uid, sentence, value, threshold, at in rows
    ]


def _snapshot_of(ws: Workspace, run: dict[str, Any]) -> tuple[list[Path], str | None]:
    """The snapshot partitions a run read, checked whole against its record, and its newest
    time; a snapshot that is gone (or incomplete) cannot be continued."""
    run_id = run["run_id"]
    target = ws.root / "runs" / run_id / "snapshot"
    stages = {s["name"]: s for s in run.get("stages", [])}
    snap = stages.get("snapshot") or {}
    parts = sorted(target.glob("part=*/*.parquet"))
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    if not parts or rows != int(snap.get("rows_out") or 0):
        state = "incomplete" if parts else "gone"
        raise NotFoundError(
            f"the snapshot of run {run_id} is {state} ({target}), so the run cannot be continued "
            f"past its data checks; run the pipeline again ({advice.command(ws.root, 'run', run['pipeline'])})"
        )
    snap_detail = json.loads(snap.get("detail") or "{}")
    return parts, snap_detail.get("newest")


def _override(
    ws: Workspace, cfg: PipelineConfig, run: dict[str, Any], reason: str, actor: str | None
) -> Override:
    """Everything a run stopped by its data checks needs to go on past the stop."""
    run_id = run["run_id"]
    parts, newest = _snapshot_of(ws, run)
    detail = json.loads(run["detail"]) if run.get("detail") else {}
    results = _stored_check_results(ws, run_id)
    stops = checks.stop_results(results)
    if not stops:
        raise UsageError(
            f"run {run_id} was held before forecasting, but no data check with policy 'stop' "
            "failed in its record; there is no stop to lift (run the pipeline again: "
            f"{advice.command(ws.root, 'run', run['pipeline'])})"
        )
    names = tuple(sorted({r.check for r in stops}))
    lifted = tuple(r for r in results if r.check in names and not r.passed and r.policy != "warn")
    lifted_ids = {id(r) for r in lifted}
    judged = [
        replace(r, policy="warn", blocking=False) if id(r) in lifted_ids else r for r in results
    ]
    nonnegative: set[str] = set()
    for directory in sorted({p.parent for p in parts}):
        nonnegative |= gate.nonnegative_series(_read_partition(directory))
    checked = _Checked(
        judged,
        checks.RunFigures.from_dict(detail.get("check_figures") or {}),
        nonnegative,
        checks.excluded_series(judged),
        checks.level_shift_cuts(judged, checks.build_specs(cfg)),
        [],
    )
    stage = {s["name"]: s for s in run.get("stages", [])}.get("check") or {}
    series_in = int(stage.get("series_in") or checked.figures.series)
    mean_points = int(stage.get("rows_in") or checked.figures.rows) / max(1, series_in)
    detail["approval"] = {
        "actor": actor or control.current_actor(),
        "reason": reason,
        "overridden_checks": list(names),
        "lifted_results": len(lifted),
        "lifted_series": sorted({r.unique_id for r in lifted if r.unique_id is not None})[:100],
        "held_because": run.get("error"),
        "held_gate": detail.get("gate"),
        "config_changed_since_run": run.get("config_sha256") != config_digest(cfg),
    }
    return Override(
        reason, actor, names, lifted, checked, parts, newest, series_in, mean_points, detail
    )


def continue_stopped_run(
    ws: Workspace, run_id: str, reason: str, *, actor: str | None = None
) -> tuple[RunResult, Override]:
    """Continue a run its data checks stopped, past the stop, as a person approved it: from
    its own snapshot (not the store as it is now), with the checks that stopped it lifted;
    forecast, run the output gate for the record (it does not hold), publish.

    The run keeps its id and record and stays held until it publishes: an approval that fails
    part-way (killed, out of memory) leaves it held, and approving it again resumes from the
    partitions it finished. Auditing the approval is the caller's (``levers.approve``).
    """
    run = runlog.get_run(ws.control_path, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id!r} in {ws.root}")
    pipeline = run["pipeline"]
    cfg = ws.pipeline(pipeline)
    _check_candidates(cfg)
    check_engine(cfg.engine, cfg.name)
    result = RunResult(run_id=run_id, pipeline=pipeline, status="held")
    with runlog.pipeline_lock(ws.control_path, pipeline, run_id):
        run = runlog.get_run(ws.control_path, run_id) or run  # again, under the lock
        if run["status"] != "held":
            raise UsageError(
                f"run {run_id} is {run['status']}, not held; only a held run can be approved"
            )
        override = _override(ws, cfg, run, reason, actor)
        records: list[runlog.StageRecord] = []
        try:
            with run_context(run_id, pipeline):
                log.info(
                    "approved past its data checks (%s): continuing", ", ".join(override.checks)
                )
                _execute(
                    ws, cfg, run_id, ws.root / "runs" / run_id, result, records, None, override
                )
                log.info("run finished: %s", result.status)
        except SteadycastError as exc:
            # Same error (type, exit code), saying what it means for the run.
            exc.args = (
                f"approving run {run_id} failed while continuing it: {exc}; the run is still "
                "held and the current release is unchanged",
            )
            raise
        except Exception as exc:
            log.exception("approving run %s failed", run_id)
            raise SteadycastError(
                f"approving run {run_id} failed while continuing it (internal error: "
                f"{type(exc).__name__}: {exc}); the run is still held and the current release "
                "is unchanged"
            ) from exc
        finally:
            result.stages = [r.as_dict() for r in records if r.usage is not None]
    return result, override
