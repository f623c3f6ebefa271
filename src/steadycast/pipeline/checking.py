"""The check stage: series-level data checks per partition, run-level ones on their sums, the
results stored, and the checks' policies (exclude a series, cut its window) applied later.

Partition processes run the series-level checks and write every result to a Parquet file; only
the failed ones come back, so a run never holds a million series' passed results. The stored
results are what an approval reads back, so the run it continues is judged on what it found.
"""

from __future__ import annotations

import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from steadycast.config import PipelineConfig
from steadycast.engines.pool import PartitionPool, ProcessesUsage
from steadycast.pipeline.scope import RunScope
from steadycast.pipeline.snapshot import Snapshot, read_snapshot_partition
from steadycast.quality import checks, gate
from steadycast.quality.checks import CheckResult, RunFigures
from steadycast.storage import runlog, store
from steadycast.workspace import Workspace

__all__ = [
    "Checked",
    "apply_check_policies",
    "check_partitions",
    "run_checks",
    "stored_check_results",
]


@dataclass(frozen=True)
class Checked:
    """What the run keeps of its checks: the failed series-level results and every run-level
    one (all series-level results, passed ones included, are stored from ``stored``), and the
    size of what was checked (for the tier plan)."""

    results: list[CheckResult]
    figures: RunFigures
    nonnegative: set[str]
    excluded: dict[str, list[str]]
    cuts: dict[str, pd.Timestamp]
    stored: list[Path]  # Parquet files of every series-level result, one per partition
    series_in: int = 0
    mean_points: float = 0.0
    delivered_after: str | None = None


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
    goes to ``out``; only the failed ones come back."""

    directory: Path
    specs: dict[str, checks.CheckSpec]
    ctx: checks.CheckContext
    out: Path

    def __call__(self) -> _PartitionChecks:
        history = read_snapshot_partition(self.directory)
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


def run_checks(
    scope: RunScope, snap: Snapshot, previous: dict[str, Any] | None, pool: PartitionPool
) -> Checked:
    """Check stage: check every partition of the snapshot, then store every result."""
    newest = pd.Timestamp(snap.newest) if snap.newest else None
    with scope.stage("check") as rec:
        checked = check_partitions(
            list(snap.parts), scope.cfg, newest, previous, rec, pool, scope.run_dir / "checks"
        )
    _store_checks(scope.ws, scope.pipeline, scope.run_id, checked)
    return checked


def _delivered_after(previous: dict[str, Any] | None) -> pd.Timestamp | None:
    """Where the newest delivery starts, for the feed-fault check: after the newest data of the
    last published run. After a held run, the same point as that run used, so a delivery that
    held a run is judged again until a run publishes."""
    detail = (previous or {}).get("detail", {})
    at = detail.get("newest") if (previous or {}).get("status") == "published" else None
    at = at or detail.get("delivered_after")
    return pd.Timestamp(at) if at else None


def _context(
    cfg: PipelineConfig,
    newest: pd.Timestamp | None,
    previous: dict[str, Any] | None,
    rec: runlog.StageRecord,
) -> checks.CheckContext:
    """What the checks compare against: the newest data, the last run's figures (volume
    parity) and where the newest delivery starts (feed faults), which ``rec`` records."""
    prev = (previous or {}).get("detail", {}).get("check_figures")
    delivered_after = _delivered_after(previous)
    rec.detail["delivered_after"] = delivered_after.isoformat() if delivered_after else None
    return checks.CheckContext.from_config(
        cfg,
        newest=newest,
        previous=checks.RunFigures.from_dict(prev) if prev else None,
        delivered_after=delivered_after,
    )


def check_partitions(
    parts: list[Path],
    cfg: PipelineConfig,
    newest: pd.Timestamp | None,
    previous: dict[str, Any] | None,
    rec: runlog.StageRecord,
    pool: PartitionPool,
    out_dir: Path,
) -> Checked:
    """Run the series-level checks of every partition in ``pool`` and the run-level checks on
    their sums; ``rec`` gets the stage's figures."""
    specs = dict(checks.build_specs(cfg))
    ctx = _context(cfg, newest, previous, rec)
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
    return Checked(
        results,
        figures,
        nonneg,
        excluded,
        checks.level_shift_cuts(results, specs),
        sorted(out_dir.glob("*.parquet")),
        series_in=rec.series_in,
        mean_points=rec.rows_in / max(1, rec.series_in),
        delivered_after=rec.detail["delivered_after"],
    )


def _store_checks(ws: Workspace, pipeline: str, run_id: str, checked: Checked) -> None:
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


def stored_check_results(ws: Workspace, run_id: str) -> list[CheckResult]:
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


def apply_check_policies(
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
