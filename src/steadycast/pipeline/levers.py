"""The two levers a person pulls when a run needs them: roll back and approve.

Both are one command, both go to the audit log with who pulled them and why. ``approve`` works
on any held run: one held by the output gate is published as it is; one its data checks stopped
before forecasting is continued past the stop (``run.continue_stopped_run``) and published.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from steadycast.errors import NotFoundError, UsageError
from steadycast.ops import incidents
from steadycast.pipeline.publish import Audit, audit, audit_release, publish, read_held
from steadycast.storage import control, outcome, releases, runlog
from steadycast.workspace import Workspace


def rollback(
    ws: Workspace, pipeline: str, reason: str, to: str | None = None, *, actor: str | None = None
) -> str:
    """Make an earlier release current again; returns its id. ``actor`` overrides who the
    audit log names (default: ``control.current_actor()``)."""
    ws.pipeline(pipeline)
    if not reason.strip():
        raise UsageError("a rollback needs a reason (--reason TEXT); it goes to the audit log")
    was = releases.current_id(ws.releases_dir, pipeline)
    if to is None:
        target = releases.previous_release(ws.releases_dir, pipeline)
        if target is None:
            raise NotFoundError(f"pipeline {pipeline!r} has no earlier release to roll back to")
        to = target.release_id
    elif to not in {r.release_id for r in releases.list_releases(ws.releases_dir, pipeline)}:
        # Looked up in the listing, never turned into a path: ``to`` may come from a request.
        raise NotFoundError(f"no release {to[:80]!r} of pipeline {pipeline!r}")
    if to == was:
        raise UsageError(f"release {to!r} is already the current release of {pipeline!r}")
    releases.make_current(ws.releases_dir, pipeline, to)
    audit(
        ws,
        "release.rollback",
        actor,
        pipeline=pipeline,
        subject=to,
        reason=reason,
        detail={"from": was, "to": to},
    )
    _record_rollback(ws, pipeline, was, to, reason, actor or control.current_actor())
    # The sinks follow the release made current; one that fails is retried by the next run.
    from steadycast.sinks.deliver import deliver_pipeline

    deliver_pipeline(ws, pipeline, outcome.run_of_release(ws.control_path, to))
    return to


def _record_rollback(
    ws: Workspace, pipeline: str, was: str | None, to: str, reason: str, who: str
) -> None:
    """Say so on both runs (the one whose release was replaced, the one made current again)
    and close the pipeline's held incident: a person chose what is served."""
    replaced = outcome.run_of_release(ws.control_path, was)
    if replaced is not None:
        outcome.record_event(ws.control_path, replaced, "rolled_back", who, reason, to=to)
    restored = outcome.run_of_release(ws.control_path, to)
    if restored is not None:
        outcome.record_event(ws.control_path, restored, "restored", who, reason, **{"from": was})
    note = f"rolled back by {who}: {reason} (release {to} is current)"
    _resolve(ws, pipeline, who, note, {incidents.fingerprint("held", pipeline)})


def approve(ws: Workspace, run_id: str, reason: str, *, actor: str | None = None) -> str:
    """Publish a held run (the manual override); returns the new release id.

    A run held by its output gate is published as it is. A run its data checks stopped before
    forecasting is continued from its own snapshot past the stop, forecast, judged by the
    output gate for the record (not held by it), and published. ``actor`` overrides who the
    audit log names (default: ``control.current_actor()``)."""
    if not reason.strip():
        raise UsageError("an approval needs a reason (--reason TEXT); it goes to the audit log")
    run = runlog.get_run(ws.control_path, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id!r} in {ws.root}")
    if run["status"] != "held":
        raise UsageError(
            f"run {run_id} is {run['status']}, not held; only a held run can be approved"
        )
    pipeline = run["pipeline"]
    held = read_held(ws, run_id)
    if held.export.empty:
        return _approve_stopped(ws, run_id, reason, actor)
    approved = replace(held, meta={**held.meta, "approved": True, "approved_reason": reason})
    entry = Audit("run.approved", on_run=True, actor=actor, reason=reason)
    release = publish(ws, pipeline, run_id, approved, entry)
    _approved(ws, pipeline, run_id, release.release_id, reason, actor, set())
    return release.release_id


def _approve_stopped(ws: Workspace, run_id: str, reason: str, actor: str | None) -> str:
    """Continue a run its data checks stopped, publish it, and say so: audit log (who, why,
    which checks were overridden, what the output gate found) and the stop's incidents."""
    # Forecasting loads the model libraries: imported here so the server and the CLI start
    # without them.
    from steadycast.pipeline.run import continue_stopped_run

    result, override = continue_stopped_run(ws, run_id, reason, actor=actor)
    pipeline = result.pipeline
    if result.release_id is None:  # never expected: the continuation publishes or raises
        raise UsageError(f"run {run_id} was continued but not published ({result.status})")
    release = releases.read_release(ws.releases_dir, pipeline, result.release_id)
    runlog.update_run(ws.control_path, run_id, error=None)
    stop_prints = {
        incidents.fingerprint("held", pipeline),
        incidents.fingerprint("gate", "blocking_checks", pipeline),
    }
    stop_prints |= {
        incidents.fingerprint("check", r.check, pipeline, r.unique_id) for r in override.lifted
    }
    detail = {
        "override": "data checks",
        "overridden_checks": list(override.checks),
        "lifted_results": len(override.lifted),
        "series": result.series,
        "gate_failed": [g["check"] for g in result.gate if not g["passed"]],
    }
    entry = Audit("run.approved", on_run=True, actor=actor, reason=reason, detail=detail)
    audit_release(ws, pipeline, run_id, release, entry)
    _approved(ws, pipeline, run_id, release.release_id, reason, actor, stop_prints)
    return release.release_id


def _approved(
    ws: Workspace,
    pipeline: str,
    run_id: str,
    release_id: str,
    reason: str,
    actor: str | None,
    fingerprints: set[str],
) -> None:
    """An approval on the run's record ("held, then approved by NAME: REASON") and its cause
    cleared: the pipeline's held incident and ``fingerprints`` resolved, the approval as the
    note."""
    who = actor or control.current_actor()
    outcome.record_event(ws.control_path, run_id, "approved", who, reason, release_id=release_id)
    note = f"run {run_id} approved by {who}: {reason}"
    _resolve(ws, pipeline, who, note, {incidents.fingerprint("held", pipeline), *fingerprints})


def _resolve(ws: Workspace, pipeline: str, who: str, note: str, fingerprints: set[str]) -> None:
    """Resolve the live incidents with these fingerprints, with ``note``: one record however
    the run was held."""
    for incident in incidents.list_incidents(ws.control_path, pipeline=pipeline):
        if incident.fingerprint in fingerprints and incident.state != "resolved":
            incidents.resolve(ws.control_path, incident.id, actor=who, note=note)


def approval_outcome(ws: Workspace, run_id: str) -> dict[str, Any]:
    """What an approval of ``run_id`` did beyond publishing, read back from its run record: the
    data checks it overrode (empty when the output gate held the run), the series forecast, and
    the output gate's findings, recorded but not holding. The approver is told all three."""
    record = runlog.get_run(ws.control_path, run_id) or {}
    detail = json.loads(record.get("detail") or "{}")
    return {
        "overridden_checks": (detail.get("approval") or {}).get("overridden_checks") or [],
        "series": record.get("series") or 0,
        "gate_failed": [g for g in detail.get("gate", []) if not g.get("passed")],
    }
