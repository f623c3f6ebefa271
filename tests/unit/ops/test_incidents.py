"""Incidents: de-duplicated by fingerprint, re-sightings counted, resolved when the cause is
gone (and saying so), acknowledged and resolved by people, every change audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from steadycast.errors import NotFoundError, UsageError
from steadycast.ops.incidents import (
    Finding,
    acknowledge,
    check_findings,
    fingerprint,
    gate_findings,
    get_incident,
    held_finding,
    list_incidents,
    observe_run,
    raise_incident,
    record_findings,
    resolve,
)
from steadycast.quality.checks import CheckResult
from steadycast.quality.gate import GateDecision, GateResult
from steadycast.storage.control import audit_entries

STUCK = fingerprint("check", "flat_line", "meters", "m42")


@pytest.fixture
def control_path(tmp_path: Path) -> Path:
    return tmp_path / "control.sqlite"


def stuck_meter(control_path: Path, run_id: str, severity: str = "warning"):  # type: ignore[no-untyped-def]
    return raise_incident(
        control_path,
        STUCK,
        "meters",
        "check",
        severity,
        "flat_line failed for series 'm42'",
        f"series 'm42': stuck at 0 ({run_id})",
        run_id,
    )


def test_fingerprints_are_stable_strings() -> None:
    assert STUCK == "check:flat_line:meters:m42"
    assert fingerprint("gate", "fallback_share", "meters") == "gate:fallback_share:meters"
    assert fingerprint("check", "volume_parity", "meters", None) == "check:volume_parity:meters"


def test_the_same_cause_is_one_incident_whose_sightings_are_counted(control_path: Path) -> None:
    first, new = stuck_meter(control_path, "run-1")
    assert new and first.state == "open" and first.occurrences == 1
    again, new_again = stuck_meter(control_path, "run-2", severity="error")
    assert not new_again
    assert again.id == first.id
    assert again.occurrences == 2
    assert again.run_id == "run-2"
    assert again.severity == "error"  # the worse severity is kept
    assert again.detail.endswith("(run-2)")
    assert again.first_seen == first.first_seen and again.last_seen >= first.last_seen
    assert len(list_incidents(control_path)) == 1
    opened = [e for e in audit_entries(control_path) if e["action"] == "incident.opened"]
    assert len(opened) == 1  # a re-sighting is not a change of state


def test_acknowledged_incidents_are_still_deduplicated(control_path: Path) -> None:
    first, _ = stuck_meter(control_path, "run-1")
    acknowledge(control_path, first.id, actor="ana", note="meter crew on site")
    again, new = stuck_meter(control_path, "run-2")
    assert not new and again.id == first.id and again.state == "acknowledged"


def test_a_cause_that_returns_after_resolution_opens_a_new_incident(control_path: Path) -> None:
    first, _ = stuck_meter(control_path, "run-1")
    resolve(control_path, first.id, actor="ana", note="meter replaced")
    second, new = stuck_meter(control_path, "run-5")
    assert new and second.id != first.id and second.state == "open"
    assert get_incident(control_path, first.id).state == "resolved"


def test_an_incident_resolves_itself_when_its_cause_is_gone_and_says_why(
    control_path: Path,
) -> None:
    stuck, _ = stuck_meter(control_path, "run-1")
    gate, _ = raise_incident(
        control_path,
        fingerprint("gate", "fallback_share", "meters"),
        "meters",
        "gate",
        "error",
        "gate rule fallback_share failed",
        "35% on fallback",
        "run-1",
    )
    other, _ = raise_incident(
        control_path,
        fingerprint("check", "flat_line", "other", "x"),
        "other",
        "check",
        "warning",
        "t",
        "d",
        "run-0",
    )
    resolved = observe_run(control_path, "meters", "run-2", set(), kinds=["check"])
    assert [i.id for i in resolved] == [stuck.id]
    after = get_incident(control_path, stuck.id)
    assert after.state == "resolved"
    assert after.resolution == "cause gone: not seen in run run-2"
    # Other kinds and other pipelines were not looked at, so they stay open.
    assert get_incident(control_path, gate.id).state == "open"
    assert get_incident(control_path, other.id).state == "open"
    entry = next(e for e in audit_entries(control_path) if e["action"] == "incident.resolved")
    assert entry["subject"] == f"incident:{stuck.id}"
    assert entry["reason"] == "cause gone: not seen in run run-2"
    assert entry["detail"]["auto"] is True


def test_observe_run_keeps_incidents_whose_cause_was_seen(control_path: Path) -> None:
    stuck, _ = stuck_meter(control_path, "run-1")
    assert observe_run(control_path, "meters", "run-2", {STUCK}, kinds=["check"]) == []
    assert get_incident(control_path, stuck.id).state == "open"


def test_acknowledge_and_resolve_are_audited_with_actor_and_note(control_path: Path) -> None:
    incident, _ = stuck_meter(control_path, "run-1")
    acked = acknowledge(control_path, incident.id, actor="ana", note="on it")
    assert acked.state == "acknowledged" and acked.acknowledged_by == "ana"
    assert acked.acknowledged_at is not None and acked.acknowledge_note == "on it"
    assert acknowledge(control_path, incident.id, actor="bo").acknowledged_by == "ana"
    done = resolve(control_path, incident.id, actor="bo", note="meter replaced")
    assert done.state == "resolved" and done.resolved_by == "bo"
    assert done.resolution == "meter replaced"
    entries = [e for e in audit_entries(control_path) if e["subject"] == f"incident:{incident.id}"]
    actions = [(e["action"], e["actor"], e["reason"]) for e in reversed(entries)]
    assert actions == [
        ("incident.opened", actions[0][1], "series 'm42': stuck at 0 (run-1)"),
        ("incident.acknowledged", "ana", "on it"),
        ("incident.resolved", "bo", "meter replaced"),
    ]
    assert entries[0]["detail"]["previous_state"] == "acknowledged"
    assert entries[0]["pipeline"] == "meters"


def test_the_actor_defaults_to_the_current_user(
    control_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEADYCAST_ACTOR", "token:ops-bot")
    incident, _ = stuck_meter(control_path, "run-1")
    assert acknowledge(control_path, incident.id).acknowledged_by == "token:ops-bot"
    assert audit_entries(control_path)[0]["actor"] == "token:ops-bot"


def test_bad_transitions_and_unknown_ids_say_what_is_wrong(control_path: Path) -> None:
    incident, _ = stuck_meter(control_path, "run-1")
    resolve(control_path, incident.id, actor="ana", note="fixed")
    assert resolve(control_path, incident.id, actor="bo").resolved_by == "ana"
    with pytest.raises(UsageError, match=rf"incident {incident.id} is resolved \(fixed\)"):
        acknowledge(control_path, incident.id)
    with pytest.raises(NotFoundError, match=r"no incident 999; `steadycast incidents` lists"):
        acknowledge(control_path, 999)
    with pytest.raises(UsageError, match=r"state 'closed' is not one of open, acknowledged"):
        list_incidents(control_path, state="closed")


def test_list_filters_by_state_and_pipeline(control_path: Path) -> None:
    a, _ = stuck_meter(control_path, "run-1")
    b, _ = raise_incident(
        control_path, "held:solar", "solar", "held", "error", "held", "gate", "run-9"
    )
    acknowledge(control_path, b.id, actor="ana")
    assert [i.id for i in list_incidents(control_path)] == [b.id, a.id]
    assert [i.id for i in list_incidents(control_path, state="open")] == [a.id]
    assert [i.id for i in list_incidents(control_path, pipeline="solar")] == [b.id]


def test_record_findings_opens_updates_and_resolves_in_one_go(control_path: Path) -> None:
    results = [
        CheckResult("flat_line", False, "warning", False, "warn", "m1", "series 'm1': stuck"),
        CheckResult("flat_line", False, "warning", False, "warn", "m2", "series 'm2': stuck"),
        CheckResult("spikes", False, "info", False, "warn", "m3", "series 'm3': outlier"),
        CheckResult("completeness", True, "warning", False, "warn", "m4", "fine"),
    ]
    findings = check_findings("meters", results)
    assert [f.fingerprint for f in findings] == [
        "check:flat_line:meters:m1",
        "check:flat_line:meters:m2",
    ]  # info is below the default minimum severity, passed results are not findings
    first = record_findings(control_path, "meters", "run-1", findings, kinds=["check"])
    assert len(first.opened) == 2 and first.updated == [] and first.resolved == []
    second = record_findings(control_path, "meters", "run-2", findings[:1], kinds=["check"])
    assert [i.fingerprint for i in second.updated] == ["check:flat_line:meters:m1"]
    assert [i.fingerprint for i in second.resolved] == ["check:flat_line:meters:m2"]
    assert second.resolved[0].resolution == "cause gone: not seen in run run-2"


def test_gate_and_held_findings_are_fingerprinted_per_rule_and_pipeline() -> None:
    decision = GateDecision(
        False,
        [
            GateResult("fallback_share", False, "35% on fallback (limit 20%)"),
            GateResult("total_jump", False, "+80%", blocking=False),
            GateResult("non_finite", True, "all finite"),
        ],
    )
    found = gate_findings("meters", decision)
    assert [(f.fingerprint, f.severity) for f in found] == [
        ("gate:fallback_share:meters", "error"),
        ("gate:total_jump:meters", "warning"),
    ]
    held = held_finding("meters", "run-3", "gate held the run: 35% on fallback")
    assert held == Finding(
        "held:meters",
        "held",
        "error",
        "pipeline 'meters' is held: run run-3 was not published",
        "gate held the run: 35% on fallback",
    )


def test_many_findings_are_recorded_quickly(control_path: Path) -> None:
    findings = [
        Finding(fingerprint("check", "flat_line", "meters", f"m{i}"), "check", "warning", "t", "d")
        for i in range(2000)
    ]
    changes = record_findings(control_path, "meters", "run-1", findings, kinds=["check"])
    assert len(changes.opened) == 2000
    changes = record_findings(control_path, "meters", "run-2", [], kinds=["check"])
    assert len(changes.resolved) == 2000
    assert list_incidents(control_path, state="open") == []
