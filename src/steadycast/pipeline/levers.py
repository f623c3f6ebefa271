"""The two levers a person pulls when a run needs them: roll back and approve.

Both are one command, both go to the audit log with who pulled them and why. ``approve`` works
on any held run: one held by the output gate is published as it is; one its data checks stopped
before forecasting is continued past the stop (``run.continue_stopped_run``) and published.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from steadycast.errors import NotFoundError, UsageError
from steadycast.ops import incidents
from steadycast.storage import control, releases, runlog
from steadycast.workspace import Workspace


def _audit(
    ws: Workspace,
    action: str,
    actor: str | None,
    *,
    pipeline: str,
    subject: str,
    reason: str,
    detail: dict[str, Any],
) -> None:
    """``control.audit``, naming ``actor`` when given (the server acts for its API token).

    The CLI names its actor through ``STEADYCAST_ACTOR``; a server handles many requests in one
    process, so it passes the actor per call instead of changing its environment.
    """
    if actor is None:
        control.audit(
            ws.control_path,
            action,
            pipeline=pipeline,
            subject=subject,
            reason=reason,
            detail=detail,
        )
        return
    with control.connect(ws.control_path) as con:
        con.execute(
            "INSERT INTO audit (at, actor, action, pipeline, subject, reason, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                control.utcnow(),
                actor,
                action,
                pipeline,
                subject,
                reason,
                json.dumps(detail, default=str, sort_keys=True),
            ),
        )


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
    else:
        releases.read_release(ws.releases_dir, pipeline, to)  # NotFoundError naming it
    if to == was:
        raise UsageError(f"release {to!r} is already the current release of {pipeline!r}")
    releases.make_current(ws.releases_dir, pipeline, to)
    _audit(
        ws,
        "release.rollback",
        actor,
        pipeline=pipeline,
        subject=to,
        reason=reason,
        detail={"from": was, "to": to},
    )
    return to


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
    held = ws.root / "runs" / run_id / releases.HELD
    try:
        forecasts = pd.read_parquet(held / releases.FORECASTS)
        provenance = pd.read_parquet(held / "provenance.parquet")
        meta = json.loads((held / "meta.json").read_text())
    except FileNotFoundError:
        raise NotFoundError(f"the forecasts of held run {run_id} are gone from {held}") from None
    if forecasts.empty:
        return _approve_stopped(ws, run_id, reason, actor)
    meta = {**meta, "approved": True, "approved_reason": reason}
    release = releases.write_release(
        ws.releases_dir, pipeline, run_id, forecasts, meta, extras={"provenance": provenance}
    )
    releases.make_current(ws.releases_dir, pipeline, release.release_id)
    runlog.update_run(ws.control_path, run_id, status="published", release_id=release.release_id)
    fingerprints = {incidents.fingerprint("held", pipeline)}
    _record_approval(ws, pipeline, run_id, reason, actor, release, fingerprints, {})
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
    _record_approval(ws, pipeline, run_id, reason, actor, release, stop_prints, detail)
    return release.release_id


def _record_approval(
    ws: Workspace,
    pipeline: str,
    run_id: str,
    reason: str,
    actor: str | None,
    release: releases.Release,
    fingerprints: set[str],
    detail: dict[str, Any],
) -> None:
    """Audit the approval (the release it published plus ``detail``), then resolve the live
    incidents with these fingerprints, the approval as the note: one record however the run was
    held."""
    _audit(
        ws,
        "run.approved",
        actor,
        pipeline=pipeline,
        subject=run_id,
        reason=reason,
        detail={
            "release_id": release.release_id,
            "content_sha256": release.manifest["content_sha256"],
            **detail,
        },
    )
    for incident in incidents.list_incidents(ws.control_path, pipeline=pipeline):
        if incident.fingerprint in fingerprints and incident.state != "resolved":
            incidents.resolve(
                ws.control_path, incident.id, actor=actor, note=f"run {run_id} approved: {reason}"
            )
