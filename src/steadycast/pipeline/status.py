"""What ``steadycast status`` and the dashboard show for a pipeline at a glance.

Read from the control plane and the release pointer only, so it answers while a run works.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from steadycast.config import PipelineConfig
from steadycast.errors import ConfigError
from steadycast.ops import sla
from steadycast.ops.hogs import run_history
from steadycast.ops.incidents import list_incidents
from steadycast.storage import control, releases
from steadycast.storage.outcome import outcome
from steadycast.workspace import Workspace


def pipeline_status(ws: Workspace, pipeline: str) -> dict[str, Any]:
    with control.connect(ws.control_path) as con:
        row = con.execute(
            "SELECT run_id, status, started_at, finished_at, release_id, series, fallback_series, "
            "error, detail FROM runs WHERE pipeline = ? ORDER BY started_at DESC LIMIT 1",
            (pipeline,),
        ).fetchone()
    last = dict(row) if row else None
    gate: list[dict[str, Any]] = []
    if last is not None:
        detail = json.loads(last.pop("detail") or "{}")
        last["outcome"] = outcome(last["status"], detail)
        gate = [
            {"check": g["check"], "passed": g["passed"], "detail": g["detail"]}
            for g in detail.get("gate", [])
        ]
    cfg, config_error = _load(ws, pipeline)
    open_incidents = [
        i for i in list_incidents(ws.control_path, pipeline=pipeline) if i.state != "resolved"
    ]
    sla_now = (
        None if cfg is None else sla.sla_state(ws, pipeline, cfg.sla, datetime.now(UTC)).as_dict()
    )
    return {
        "pipeline": pipeline,
        "broken": config_error is not None,
        "config_error": config_error,
        "sla": sla_now,
        "last_run": last,
        "gate": gate,
        "current_release": releases.current_id(ws.releases_dir, pipeline),
        "open_incidents": len(open_incidents),
        "sinks": _sinks(ws, cfg),
        "incidents": [i.as_dict() for i in open_incidents[:20]],
        "audit": control.audit_entries(ws.control_path, pipeline, limit=20),
    }


def _sinks(ws: Workspace, cfg: PipelineConfig | None) -> list[dict[str, Any]]:
    """What each sink holds against the current release, as recorded (``sinks/deliver.py``)."""
    if cfg is None or not cfg.sinks:
        return []
    from steadycast.sinks.deliver import sink_states

    return [d.as_dict() for d in sink_states(ws, cfg)]


def _load(ws: Workspace, pipeline: str) -> tuple[PipelineConfig | None, str | None]:
    """The pipeline's config, or why its file does not load (loading it opens its ``config``
    incident): a broken pipeline is shown as broken, never as normal."""
    try:
        return ws.pipeline(pipeline), None
    except ConfigError as exc:
        return None, str(exc)


def pipeline_summaries(ws: Workspace) -> list[dict[str, Any]]:
    """Every pipeline in one line each, for the dashboard and ``GET /api/v1/pipelines``: its
    last run (with the totals of ``steadycast runs``, without the stages), that run's gate
    results, the current release and the count of live incidents by state."""
    names = ws.pipeline_names()
    # Loaded before counting: loading a broken file opens (or resolves) its incident.
    errors = {name: _load(ws, name)[1] for name in names}
    live: dict[str, dict[str, int]] = {}
    for incident in list_incidents(ws.control_path):
        if incident.state in ("open", "acknowledged"):
            counts = live.setdefault(incident.pipeline, {"open": 0, "acknowledged": 0})
            counts[incident.state] += 1
    return [_summary(ws, name, live.get(name, {}), errors[name]) for name in names]


def _summary(
    ws: Workspace, pipeline: str, live: dict[str, int], config_error: str | None
) -> dict[str, Any]:
    runs = run_history(ws, pipeline, limit=1)
    last = runs[0] if runs else None
    detail = last.get("detail") if last else None
    gate = detail.get("gate") if isinstance(detail, dict) else None
    return {
        "name": pipeline,
        "broken": config_error is not None,
        "config_error": config_error,
        "last_run": {k: v for k, v in last.items() if k not in ("stages", "detail")}
        if last
        else None,
        "gate": gate if isinstance(gate, list) else None,
        "current_release": releases.current_id(ws.releases_dir, pipeline),
        "open_incidents": live.get("open", 0),
        "acknowledged_incidents": live.get("acknowledged", 0),
    }


def workspace_status(ws: Workspace, pipeline: str | None = None) -> dict[str, Any]:
    """``pipeline_status`` of one pipeline, or of every pipeline of the workspace when
    ``pipeline`` is ``None``; a name with no pipeline file is a clear error, not an empty row."""
    names = [pipeline] if pipeline else ws.pipeline_names()
    if pipeline:
        _load(ws, pipeline)  # an unknown name is an error; a broken file is shown as broken
    return {"pipelines": [pipeline_status(ws, name) for name in names]}


def release_history(ws: Workspace, pipeline: str) -> dict[str, Any]:
    """The releases of a pipeline, newest first, each manifest marked ``current`` or not."""
    ws.pipeline(pipeline)
    current = releases.current_id(ws.releases_dir, pipeline)
    rows = [
        {**r.manifest, "current": r.release_id == current}
        for r in releases.list_releases(ws.releases_dir, pipeline)
    ]
    return {"pipeline": pipeline, "current": current, "releases": rows}
