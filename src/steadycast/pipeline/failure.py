"""A failed run's record, and the end of the pipeline's ``failed`` incident when a run finishes.

A failure says so in the run's record and in the audit log, with the error (and, for an
internal error, the traceback), so nobody has to re-run it to learn what happened; and it opens
(or updates) the pipeline's ``failed`` incident and alerts, so a failure at 3 a.m. reaches a
person. Neither step may hide the run's own error.
"""

from __future__ import annotations

import logging
from typing import Any

from steadycast.config import PipelineConfig
from steadycast.ops import incidents, watch
from steadycast.pipeline.scope import RunResult
from steadycast.storage import control, runlog
from steadycast.workspace import Workspace

__all__ = ["failure_over", "record_failure"]

log = logging.getLogger(__name__)


def record_failure(
    ws: Workspace, cfg: PipelineConfig, run_id: str, result: RunResult, trace: str | None = None
) -> None:
    """Mark the run failed with its error (and ``trace``), audit it, open the pipeline's
    ``failed`` incident and alert."""
    pipeline = cfg.name
    result.status = "failed"
    fields: dict[str, Any] = {"detail": {"traceback": trace}} if trace else {}
    runlog.update_run(
        ws.control_path,
        run_id,
        status="failed",
        finished_at=control.utcnow(),
        error=result.error,
        **fields,
    )
    control.audit(
        ws.control_path, "run.failed", pipeline=pipeline, subject=run_id, reason=result.error
    )
    error = result.error or "unknown error"
    try:
        finding = incidents.failed_finding(pipeline, run_id, error)
        watch.record_and_notify(ws, cfg.alerts, pipeline, run_id, [finding], [])
    except Exception as exc:  # the run's own error is what must be reported; this is secondary
        log.warning("run %s: could not open its incident: %s: %s", run_id, type(exc).__name__, exc)


def failure_over(ws: Workspace, cfg: PipelineConfig, run_id: str) -> None:
    """A run that finished (published or held) resolves the pipeline's ``failed`` incident;
    the run's own outcome stands even if that cannot be recorded."""
    try:
        watch.record_and_notify(ws, cfg.alerts, cfg.name, run_id, [], ["failed"])
    except Exception as exc:
        log.warning("run %s: could not resolve the failed incident: %s", run_id, exc)
