"""``steadycast incidents``, ``ack`` and ``resolve``: what needs a person, and moving it on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steadycast.cli._app import JsonOpt, WorkspaceOpt, emit_json, out

StateOpt = Annotated[
    str | None, typer.Option("--state", help="open, acknowledged or resolved (default: all).")
]
NoteOpt = Annotated[str | None, typer.Option("--note", help="A note for the audit log.")]
IncidentArg = Annotated[int, typer.Argument(help="Incident id.")]


def incidents(
    state: StateOpt = None,
    pipeline: Annotated[str | None, typer.Option("--pipeline", help="Only this pipeline.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Incidents, newest first: what needs a person."""
    from rich.table import Table

    from steadycast.errors import UsageError
    from steadycast.ops.incidents import STATES, list_incidents
    from steadycast.workspace import Workspace

    if state is not None and state not in STATES:
        raise UsageError(f"--state {state!r}: use one of {', '.join(STATES)}")
    ws = Workspace.open(workspace)
    found = list_incidents(ws.control_path, state=state, pipeline=pipeline)
    if json_out:
        emit_json({"incidents": [i.as_dict() for i in found]})
        return
    if not found:
        out.print("No incidents" + (f" in state {state}." if state else "."))
        return
    table = Table(title="incidents")
    for col in ("id", "state", "severity", "pipeline", "title", "seen", "last seen"):
        table.add_column(col)
    for i in found:
        table.add_row(
            str(i.id),
            i.state,
            i.severity,
            i.pipeline,
            i.title
            + (
                f"\n{i.resolved_at[:19]} {i.resolved_by}: {i.resolution}"
                if i.state == "resolved" and i.resolved_at
                else ""
            ),
            str(i.occurrences),
            i.last_seen[:19],
        )
    out.print(table)


def ack(
    incident_id: IncidentArg,
    note: NoteOpt = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Acknowledge an incident: someone is on it."""
    _incident_action("ack", incident_id, note, workspace, json_out)


def resolve(
    incident_id: IncidentArg,
    note: NoteOpt = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Resolve an incident by hand (it reopens as a new one if the cause comes back)."""
    _incident_action("resolve", incident_id, note, workspace, json_out)


def _incident_action(
    action: str, incident_id: int, note: str | None, workspace: Path | None, json_out: bool
) -> None:
    from steadycast.ops import incidents as inc
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    change = inc.acknowledge if action == "ack" else inc.resolve
    incident = change(ws.control_path, incident_id, note=note)
    if json_out:
        emit_json(incident.as_dict())
    else:
        out.print(f"incident {incident.id} is {incident.state}: {incident.title}")
