"""One incident per cause: what held a run (its blocking gate rules, its stopping data checks)
is named in the pipeline's one held incident, not opened beside it; what did not hold it (a
warning rule, a check that only excluded its series) stays a cause of its own; a later
published run closes the hold and says so."""

from __future__ import annotations

from pathlib import Path

from steadycast.ops.incidents import list_incidents, record_findings
from steadycast.pipeline.checking import Checked
from steadycast.pipeline.gating import findings
from steadycast.quality.checks import CheckResult
from steadycast.quality.checks.context import RunFigures
from steadycast.quality.gate import GateDecision, GateResult
from steadycast.quality.severity import Severity


def checked(results: list[CheckResult]) -> Checked:
    return Checked(results, RunFigures(), set(), {}, {}, [])


def result(check: str, uid: str, policy: str, severity: Severity) -> CheckResult:
    return CheckResult(check, False, severity, policy == "stop", policy, uid, f"{check} on {uid}")  # type: ignore[arg-type]


HOLDING = GateDecision(
    False,
    [
        GateResult("fallback_share", False, "40% of series on a fallback (limit 20%)"),
        GateResult("total_jump", False, "total up 30%", blocking=False, severity=Severity.WARNING),
        GateResult("negative", True, "no negative forecasts"),
    ],
)
CHECKS = [
    result("flat_line", "m1", "stop", Severity.ERROR),
    result("spike", "m2", "exclude", Severity.WARNING),
]


def test_a_held_run_has_one_finding_for_what_held_it() -> None:
    found, kinds = findings("meters", "run-1", checked(CHECKS), HOLDING, [], approved=False)
    prints = sorted(f.fingerprint for f in found)
    assert prints == ["check:spike:meters:m2", "gate:total_jump:meters", "held:meters"]
    held = next(f for f in found if f.kind == "held")
    assert "fallback_share" in held.title and "run-1" in held.title
    assert "gate rule fallback_share: 40% of series" in held.detail
    assert "data check flat_line stopped the run for series 'm1': flat_line on m1" in held.detail
    assert "held" in kinds and "gate" in kinds


def test_a_later_published_run_closes_the_hold_saying_so(tmp_path: Path) -> None:
    control = tmp_path / "control.sqlite"
    found, kinds = findings("meters", "run-1", checked(CHECKS), HOLDING, [], approved=False)
    record_findings(control, "meters", "run-1", found, kinds)
    passed = GateDecision(True, [GateResult("fallback_share", True, "5% on a fallback")])
    found, kinds = findings("meters", "run-2", checked([]), passed, [], approved=False)
    changes = record_findings(control, "meters", "run-2", found, kinds)
    held = next(i for i in changes.resolved if i.kind == "held")
    assert held.resolution == "cleared: run run-2 passed its gate and was published"
    assert held.resolved_at and held.resolved_by
    assert not [i for i in list_incidents(control, pipeline="meters") if i.state != "resolved"]
