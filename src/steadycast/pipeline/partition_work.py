"""One partition of the forecast stage: the engine-neutral unit of work, and its outputs
committed exactly once.

An engine (local processes or Spark tasks) calls ``PartitionWork`` with a partition's history;
the work applies the checks' policies, prepares and forecasts the series tier by tier, and
commits its outputs under ``parts/part=K`` (``engines/commit.py``). A retried or duplicate
attempt finds the first commit and reports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from steadycast.config import PipelineConfig
from steadycast.engines import TaskReport
from steadycast.engines.base import ModelRunner, usage_as_dict, usage_from_dict, usage_since
from steadycast.engines.commit import STAGING, commit, is_committed, staging_dir
from steadycast.forecasting import tiers
from steadycast.forecasting.covariates import Covariates, for_series
from steadycast.forecasting.forecast import PartitionResult, run_partition
from steadycast.forecasting.prepare import regularize
from steadycast.ops import failpoints
from steadycast.pipeline.checking import apply_check_policies
from steadycast.quality import remedy
from steadycast.storage.covariates import read_for_run

__all__ = [
    "PARTS",
    "SCORES",
    "PartitionWork",
    "forecast_one_partition",
    "load_partition",
]

PARTS = "parts"
TASK_FILE = "task.json"  # a committed partition's series and model usage
SCORES = "scores.parquet"


def forecast_one_partition(
    history: pd.DataFrame,
    cfg: PipelineConfig,
    runner: Any,
    last_published: pd.DataFrame | None,
    covariates: Covariates | None = None,
) -> tuple[PartitionResult, pd.DataFrame]:
    """Prepare and forecast one partition: the engine-neutral unit of work."""
    max_fill = max(cfg.series.horizon, cfg.series.season_length)
    prepared, report = regularize(history, cfg.series.frequency, max_fill=max_fill)
    results = []
    for tier, tier_cfg, subset in tiers.split(prepared, cfg):
        out = run_partition(subset, tier_cfg, runner, last_published, covariates=covariates)
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


def _save_partition(
    out_dir: Path, result: PartitionResult, report: pd.DataFrame, task: dict[str, Any]
) -> bool:
    """Write one partition's outputs in a staging directory of this attempt's own, then commit
    it (``engines/commit.py``): a partition is done only when complete, and only once however
    many attempts of its task run. Returns whether this attempt's outputs are the committed ones.
    """
    markers = out_dir.parent / STAGING  # cleared with the attempts' leftovers after the stage
    staging = staging_dir(out_dir)
    result.forecasts.to_parquet(staging / "forecasts.parquet", index=False)
    failpoints.kill_once("partition:mid-write", markers)
    result.provenance.to_parquet(staging / "provenance.parquet", index=False)
    if not result.scores.empty:
        result.scores.to_parquet(staging / SCORES, index=False)
    report.to_parquet(staging / "report.parquet", index=False)
    (staging / TASK_FILE).write_text(json.dumps(task))
    won = commit(staging, out_dir)
    failpoints.kill_once("partition:after-commit", markers)
    return won


def load_partition(out_dir: Path) -> tuple[PartitionResult, pd.DataFrame]:
    """A committed partition's forecasts and provenance, and its preparation report."""
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
class PartitionWork:
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
        history, rejected = apply_check_policies(_as_history(history), self.excluded, self.cuts)
        if history.empty:
            return TaskReport(part, "empty")
        last = None
        if last_published is not None:
            last = last_published[last_published["unique_id"].isin(history["unique_id"].unique())]
        before = runner.usage()
        stored = read_for_run(self.parts_root.parent, self.cfg)
        covariates = for_series(stored, history["unique_id"].unique(), self.cfg)
        result, report = forecast_one_partition(history, self.cfg, runner, last, covariates)
        usage = usage_since(before, runner.usage())
        # Rows set aside by the checks' policies, per partition, for parity.
        report = report.assign(rows_rejected=rejected)
        series = int(result.provenance["unique_id"].nunique())
        task = {"series": series, "usage": usage_as_dict(usage)}
        if _save_partition(self.parts_root / part, result, report, task):
            return TaskReport(part, "forecast", series, usage)
        return self.committed(part) or TaskReport(part, "committed", series)
