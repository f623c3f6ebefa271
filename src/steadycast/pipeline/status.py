"""What ``steadycast status`` and the dashboard show for a pipeline at a glance.

Read from the control plane and the release pointer only, so it answers while a run works.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from steadycast.errors import ConfigError
from steadycast.ops import sla
from steadycast.ops.incidents import list_incidents
from steadycast.storage import control, releases
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
        gate = [
            {"check": g["check"], "passed": g["passed"], "detail": g["detail"]}
            for g in detail.get("gate", [])
        ]
    open_incidents = [
        i for i in list_incidents(ws.control_path, pipeline=pipeline) if i.state != "resolved"
    ]
    try:
        sla_now = sla.sla_state(
            ws, pipeline, ws.pipeline(pipeline).sla, datetime.now(UTC)
        ).as_dict()
    except ConfigError:
        sla_now = None
    return {
        "pipeline": pipeline,
        "sla": sla_now,
        "last_run": last,
        "gate": gate,
        "current_release": releases.current_id(ws.releases_dir, pipeline),
        "open_incidents": len(open_incidents),
        "incidents": [i.as_dict() for i in open_incidents[:20]],
        "audit": control.audit_entries(ws.control_path, pipeline, limit=20),
    }
