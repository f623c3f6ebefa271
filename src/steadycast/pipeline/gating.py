"""The gate stage: the run as a whole judged by its circuit breakers, its forecasts put in the
export columns, and what the checks, the gate and the plugins found turned into findings.

The gate decides publish or hold; the findings go through ``ops.watch`` to incidents and alerts
whichever way it decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from steadycast.ops import incidents
from steadycast.ops.incidents import Finding
from steadycast.pipeline.checking import Checked
from steadycast.pipeline.forecast_stage import Forecast
from steadycast.pipeline.publish import Outputs
from steadycast.pipeline.scope import RunScope
from steadycast.quality import checks, gate

__all__ = ["Judged", "export_columns", "findings", "judge"]

#: The incident kinds a run resolves when it does not find them again.
RUN_KINDS = ["check", "gate", "held", "plugin"]
#: The stopping check results a held incident names one by one; the rest are counted.
HELD_DETAIL_CHECKS = 50


@dataclass(frozen=True)
class Judged:
    """The gate's decision and what the run would publish."""

    decision: gate.GateDecision
    outputs: Outputs


def judge(
    scope: RunScope, made: Forecast, checked: Checked, last_published: pd.DataFrame | None
) -> Judged:
    """Gate stage: evaluate the gate's rules on the run's forecasts and checks."""
    cfg = scope.cfg
    with scope.stage("gate") as rec:
        rec.rows_in = rec.rows_out = len(made.forecasts)
        decision = gate.evaluate_gate(
            cfg.gate,
            made.forecasts,
            made.provenance,
            checked.results,
            last_published,
            checked.nonnegative,
            made.scores if not made.scores.empty else None,
        )
        rec.detail["passed"] = decision.passed
    scope.result.gate = decision.as_json()
    levels = list(cfg.models.levels)
    forecasts = made.forecasts
    export = (
        forecasts[export_columns(forecasts, levels)]
        .sort_values(["unique_id", "ds"])
        .reset_index(drop=True)
        if len(forecasts)
        else forecasts
    )
    meta = {
        "levels": levels,
        "frequency": cfg.series.frequency,
        "horizon": cfg.series.horizon,
        "fallback_series": scope.result.fallback_series,
    }
    return Judged(decision, Outputs(export, made.provenance, meta))


def export_columns(forecasts: pd.DataFrame, levels: list[int]) -> list[str]:
    cols = ["unique_id", "ds", "yhat", "model"]
    for level in levels:
        cols += [f"yhat_lo_{level}", f"yhat_hi_{level}"]
    return [c for c in cols if c in forecasts.columns]


def findings(
    pipeline: str,
    run_id: str,
    checked: Checked,
    decision: gate.GateDecision,
    plugin_messages: list[str],
    *,
    approved: bool,
) -> tuple[list[Finding], list[str]]:
    """What the run found, and the incident kinds it resolves when not found again.

    One incident per cause: a held run opens the pipeline's one ``held`` incident, naming in
    its detail the blocking gate rules and the stopping data checks that held it; those are
    folded into it rather than opened beside it, so approving, a later published run or a
    rollback clears the hold in one place. What did not hold the run (a warning rule, a
    check that only excluded its series, a plugin) is a cause of its own.

    An approved run's checks' incidents were raised by the stop, and the approval resolves
    those of the stop itself (``levers.approve``); what the output gate finds now is recorded.
    """
    plugins = _plugin_findings(pipeline, plugin_messages)
    if approved:
        stop_rule = incidents.fingerprint("gate", "blocking_checks", pipeline)
        found = incidents.gate_findings(pipeline, decision) + plugins
        return [f for f in found if f.fingerprint != stop_rule], []
    stops = checks.stop_results(checked.results)
    folded = {incidents.fingerprint("check", r.check, pipeline, r.unique_id) for r in stops}
    if decision.passed:
        folded.clear()
    else:
        folded |= {incidents.fingerprint("gate", r.check, pipeline) for r in decision.holding}
    found = incidents.check_findings(pipeline, checked.results)
    found += incidents.gate_findings(pipeline, decision)
    found = [f for f in found if f.fingerprint not in folded] + plugins
    if not decision.passed:
        found.append(_held(pipeline, run_id, decision, stops))
    return found, list(RUN_KINDS)


def _held(
    pipeline: str, run_id: str, decision: gate.GateDecision, stops: list[checks.CheckResult]
) -> Finding:
    """The pipeline's held incident, naming every rule and check that held the run."""
    lines = [f"gate rule {r.check}: {r.detail}" for r in decision.holding]
    for r in stops[:HELD_DETAIL_CHECKS]:
        where = "" if r.unique_id is None else f" for series {r.unique_id!r}"
        lines.append(f"data check {r.check} stopped the run{where}: {r.sentence}")
    if len(stops) > HELD_DETAIL_CHECKS:
        more = len(stops) - HELD_DETAIL_CHECKS
        lines.append(f"and {more:,} more; the run's report lists every check result")
    causes = [r.check for r in decision.holding]
    return incidents.held_finding(pipeline, run_id, "\n".join(lines), causes)


def _plugin_findings(pipeline: str, messages: list[str]) -> list[Finding]:
    found = []
    for message in messages:
        match = re.search(r"model plugin '([^']+)'", message)
        found.append(
            incidents.plugin_finding(pipeline, match.group(1) if match else message[:60], message)
        )
    return found
