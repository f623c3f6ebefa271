"""The audit log: every change of state, who made it and why. Token only, even when reads are
open: it names the machine's users and the files they ingested."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
from typing import Annotated, Any

from fastapi import APIRouter, Query

from steadycast.server import schemas
from steadycast.server.deps import Actor, State
from steadycast.storage import control

__all__ = ["router"]

router = APIRouter()


@router.get(
    "/api/v1/audit",
    response_model=schemas.AuditList,
    tags=["ops"],
    responses=schemas.error_responses(401, 403, 404),
)
def audit(
    state: State,
    _: Actor,
    pipeline: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The newest audit entries first: every change of state, who made it and why.

    Needs the token even when reads are open: the log names the machine's users and the
    files they ingested."""
    if pipeline is not None:
        state.pipeline(pipeline)
    return {"entries": control.audit_entries(state.ws.control_path, pipeline, limit)}
