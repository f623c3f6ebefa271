"""The two levers over HTTP: roll a pipeline back, approve a held run. Both need the token and
are audited as ``api:<token_name>``; the checks and the work are ``pipeline/levers.py``'s, the
same code the CLI runs."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
from typing import Annotated

from fastapi import APIRouter, Body

from steadycast.errors import NotFoundError
from steadycast.server import schemas
from steadycast.server.deps import Actor, State

__all__ = ["router"]

router = APIRouter()


@router.post(
    "/api/v1/pipelines/{pipeline}/rollback",
    response_model=schemas.LeverResult,
    tags=["releases"],
    responses=schemas.error_responses(400, 401, 403, 404),
)
def rollback(
    state: State,
    pipeline: str,
    body: Annotated[schemas.RollbackRequest, Body()],
    actor: Actor,
) -> dict[str, str]:
    """Make an earlier release current (default: the one before); audited."""
    # Publishing code (pandas, Parquet) is loaded on the first lever pulled, not at start-up.
    from steadycast.pipeline import levers

    name = state.pipeline(pipeline)
    to = levers.rollback(state.ws, name, body.reason, to=body.to, actor=actor)
    state.refresh(name)
    return {"pipeline": name, "release_id": to, "actor": actor}


@router.post(
    "/api/v1/runs/{run_id}/approve",
    response_model=schemas.LeverResult,
    tags=["runs"],
    responses=schemas.error_responses(400, 401, 403, 404),
)
def approve(
    state: State,
    run_id: str,
    body: Annotated[schemas.ApproveRequest, Body()],
    actor: Actor,
) -> dict[str, str]:
    """Publish a held run (manual override); audited."""
    from steadycast.pipeline import levers
    from steadycast.storage.runlog import get_run

    run = get_run(state.ws.control_path, run_id)
    if run is None:  # named as asked, without the workspace's path
        raise NotFoundError(f"no run {run_id[:80]!r}")
    release_id = levers.approve(state.ws, run_id, body.reason, actor=actor)
    pipeline = str(run["pipeline"])
    state.refresh(pipeline)
    return {"pipeline": pipeline, "release_id": release_id, "actor": actor}
