"""Incidents: the list, and the two moves a person makes (acknowledge, resolve), audited."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from steadycast.errors import NotFoundError, UsageError
from steadycast.ops import incidents
from steadycast.server import schemas
from steadycast.server.deps import Actor, State

__all__ = ["router"]

router = APIRouter(tags=["incidents"])

Note = Annotated[schemas.NoteRequest | None, Body()]


def _incident_id(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise NotFoundError(f"no incident {text[:40]!r}; GET /api/v1/incidents lists them")
    return int(text)


@router.get(
    "/api/v1/incidents",
    response_model=schemas.IncidentList,
    responses=schemas.error_responses(400, 404),
)
def incident_list(
    server: State,  # not ``state``: that is the query parameter
    state: Annotated[str | None, Query(description="open, acknowledged or resolved")] = None,
    pipeline: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """Incidents, newest first."""
    if state is not None and state not in incidents.STATES:
        raise UsageError(f"state {state[:20]!r} is not one of {', '.join(incidents.STATES)}")
    if pipeline is not None:
        server.pipeline(pipeline)
    found = incidents.list_incidents(server.ws.control_path, state=state, pipeline=pipeline)
    return {"incidents": [server.public(i.as_dict()) for i in found]}


@router.post(
    "/api/v1/incidents/{incident_id}/acknowledge",
    response_model=schemas.IncidentModel,
    responses=schemas.error_responses(400, 401, 403, 404),
)
def acknowledge(state: State, incident_id: str, actor: Actor, body: Note = None) -> dict[str, Any]:
    """Someone is on it: open -> acknowledged; audited."""
    note = body.note if body else None
    return incidents.acknowledge(
        state.ws.control_path, _incident_id(incident_id), actor=actor, note=note
    ).as_dict()


@router.post(
    "/api/v1/incidents/{incident_id}/resolve",
    response_model=schemas.IncidentModel,
    responses=schemas.error_responses(400, 401, 403, 404),
)
def resolve(state: State, incident_id: str, actor: Actor, body: Note = None) -> dict[str, Any]:
    """Close an incident by hand; audited."""
    note = body.note if body else None
    return incidents.resolve(
        state.ws.control_path, _incident_id(incident_id), actor=actor, note=note
    ).as_dict()
