"""The two levers a person pulls when a run needs them: roll back and approve.

Both are one command, both go to the audit log with who pulled them and why.
"""

from __future__ import annotations

from steadycast import control, releases
from steadycast.errors import NotFoundError, UsageError
from steadycast.workspace import Workspace


def rollback(ws: Workspace, pipeline: str, reason: str, to: str | None = None) -> str:
    """Make an earlier release current again; returns its id."""
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
    control.audit(
        ws.control_path,
        "release.rollback",
        pipeline=pipeline,
        subject=to,
        reason=reason,
        detail={"from": was, "to": to},
    )
    return to
