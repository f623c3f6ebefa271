"""A person's approval of a run its data checks stopped: what the run needs to go on from
where the stop left it (its own snapshot, its checks' results with the stop lifted, its
record), read back from what the run stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from steadycast.config import PipelineConfig
from steadycast.errors import UsageError
from steadycast.ops import advice
from steadycast.pipeline.checking import Checked, stored_check_results
from steadycast.pipeline.scope import config_digest
from steadycast.pipeline.snapshot import Snapshot, read_snapshot_partition, snapshot_of
from steadycast.quality import checks, gate
from steadycast.quality.checks import CheckResult
from steadycast.storage import control
from steadycast.workspace import Workspace

__all__ = ["Override", "override_stop"]


@dataclass(frozen=True)
class Override:
    """A person's approval of a run its data checks stopped, with what the run needs to go on.

    Lifted: every failed result of the checks that stopped the run (``checks``), so those
    checks neither hold the run nor exclude series; other checks' exclusions stay."""

    reason: str
    actor: str | None
    checks: tuple[str, ...]
    lifted: tuple[CheckResult, ...]  # the failed results whose stop or exclusion is lifted
    snapshot: Snapshot
    checked: Checked
    detail: dict[str, Any]  # the run's recorded detail, with the approval added


def override_stop(
    ws: Workspace, cfg: PipelineConfig, run: dict[str, Any], reason: str, actor: str | None
) -> Override:
    """Everything a run stopped by its data checks needs to go on past the stop."""
    run_id = run["run_id"]
    snap = snapshot_of(ws, run)
    detail = json.loads(run["detail"]) if run.get("detail") else {}
    results = stored_check_results(ws, run_id)
    stops = checks.stop_results(results)
    if not stops:
        raise UsageError(
            f"run {run_id} was held before forecasting, but no data check with policy 'stop' "
            "failed in its record; there is no stop to lift (run the pipeline again: "
            f"{advice.command(ws.root, 'run', run['pipeline'])})"
        )
    names = tuple(sorted({r.check for r in stops}))
    lifted = tuple(r for r in results if r.check in names and not r.passed and r.policy != "warn")
    checked = _lifted_checks(cfg, run, snap, results, lifted, detail)
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
    return Override(reason, actor, names, lifted, snap, checked, detail)


def _lifted_checks(
    cfg: PipelineConfig,
    run: dict[str, Any],
    snap: Snapshot,
    results: list[CheckResult],
    lifted: tuple[CheckResult, ...],
    detail: dict[str, Any],
) -> Checked:
    """The run's checks as the continued run judges them: the lifted results as warnings."""
    lifted_ids = {id(r) for r in lifted}
    judged = [
        replace(r, policy="warn", blocking=False) if id(r) in lifted_ids else r for r in results
    ]
    nonnegative: set[str] = set()
    for directory in sorted({p.parent for p in snap.parts}):
        nonnegative |= gate.nonnegative_series(read_snapshot_partition(directory))
    figures = checks.RunFigures.from_dict(detail.get("check_figures") or {})
    stage = {s["name"]: s for s in run.get("stages", [])}.get("check") or {}
    series_in = int(stage.get("series_in") or figures.series)
    return Checked(
        judged,
        figures,
        nonnegative,
        checks.excluded_series(judged),
        checks.level_shift_cuts(judged, checks.build_specs(cfg)),
        [],
        series_in=series_in,
        mean_points=int(stage.get("rows_in") or figures.rows) / max(1, series_in),
    )
