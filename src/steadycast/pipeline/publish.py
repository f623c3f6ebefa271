"""Publish or hold a run's forecasts: the one implementation of "write the release, make it
current, record the run, audit it", for a run that passed its gate and for an approval.

A held run keeps its forecasts beside its record (``runs/RUN/held/``) for inspection and for
``approve``; the current release stays. This module loads no forecasting code: the server
imports it (through ``levers``) to approve and roll back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from steadycast.errors import NotFoundError
from steadycast.storage import control, releases, runlog
from steadycast.workspace import Workspace

__all__ = ["Audit", "Outputs", "audit", "audit_release", "hold", "publish", "read_held"]

PROVENANCE = "provenance.parquet"
META = "meta.json"


@dataclass(frozen=True)
class Outputs:
    """What a run publishes or holds: the forecasts in the export columns, each series'
    provenance, and the release's metadata."""

    export: pd.DataFrame
    provenance: pd.DataFrame
    meta: dict[str, Any]


@dataclass(frozen=True)
class Audit:
    """The audit entry of a publication. Its subject is the release (``on_run`` false: a run
    published it) or the run (an approval); the detail names the other one and the release's
    content hash besides ``detail``."""

    action: str
    on_run: bool = False
    actor: str | None = None
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def publish(
    ws: Workspace,
    pipeline: str,
    run_id: str,
    outputs: Outputs,
    entry: Audit,
    **record: Any,
) -> releases.Release:
    """Write the release, make it current, mark the run published (with ``record``'s fields),
    audit it, and deliver it to the pipeline's sinks."""
    release = releases.write_release(
        ws.releases_dir,
        pipeline,
        run_id,
        outputs.export,
        outputs.meta,
        extras={"provenance": outputs.provenance},
    )
    releases.make_current(ws.releases_dir, pipeline, release.release_id)
    runlog.update_run(
        ws.control_path, run_id, status="published", release_id=release.release_id, **record
    )
    audit_release(ws, pipeline, run_id, release, entry)
    # The release is current: the pipeline's sinks follow it. A sink that fails opens an
    # incident and is retried by the next run; it never un-publishes (sinks/deliver.py).
    from steadycast.sinks.deliver import deliver_pipeline

    deliver_pipeline(ws, pipeline, run_id)
    return release


def audit_release(
    ws: Workspace, pipeline: str, run_id: str, release: releases.Release, entry: Audit
) -> None:
    """The audit entry of ``release``, published from run ``run_id``."""
    sha = {"content_sha256": release.manifest["content_sha256"]}
    if entry.on_run:
        subject, detail = run_id, {"release_id": release.release_id, **sha, **entry.detail}
    else:
        subject, detail = release.release_id, {"run_id": run_id, **entry.detail, **sha}
    audit(
        ws,
        entry.action,
        entry.actor,
        pipeline=pipeline,
        subject=subject,
        reason=entry.reason,
        detail=detail,
    )


def hold(
    ws: Workspace, pipeline: str, run_id: str, outputs: Outputs, reason: str, **record: Any
) -> None:
    """Keep the forecasts for inspection and approval, mark the run held (with ``record``'s
    fields) and audit it; the current release stays."""
    held_dir = ws.root / "runs" / run_id / releases.HELD
    held_dir.mkdir(parents=True, exist_ok=True)
    outputs.export.to_parquet(held_dir / releases.FORECASTS, index=False)
    outputs.provenance.to_parquet(held_dir / PROVENANCE, index=False)
    (held_dir / META).write_text(json.dumps(outputs.meta, default=str))
    runlog.update_run(ws.control_path, run_id, status="held", error=reason, **record)
    control.audit(ws.control_path, "run.held", pipeline=pipeline, subject=run_id, reason=reason)


def read_held(ws: Workspace, run_id: str) -> Outputs:
    """The forecasts a held run kept."""
    held = ws.root / "runs" / run_id / releases.HELD
    try:
        return Outputs(
            pd.read_parquet(held / releases.FORECASTS),
            pd.read_parquet(held / PROVENANCE),
            json.loads((held / META).read_text()),
        )
    except FileNotFoundError:
        raise NotFoundError(f"the forecasts of held run {run_id} are gone from {held}") from None


def audit(
    ws: Workspace,
    action: str,
    actor: str | None,
    *,
    pipeline: str,
    subject: str,
    reason: str | None,
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
