"""A run as recorded (stages with wall, CPU, peak memory and rows; model usage) and a
pipeline's data quality (quarantine by reason, the latest check results)."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
import contextlib
import json
from typing import Any

from fastapi import APIRouter

from steadycast.errors import NotFoundError
from steadycast.server import _store_reads, schemas
from steadycast.server._encode import plain
from steadycast.server.deps import State

__all__ = ["router"]

router = APIRouter()


@router.get(
    "/api/v1/runs/{run_id}",
    response_model=schemas.RunDetail,
    tags=["runs"],
    responses=schemas.error_responses(404),
)
def run_detail(state: State, run_id: str) -> dict[str, Any]:
    """One run with its stages (wall, CPU, peak memory, rows) and model usage."""
    from steadycast.storage.runlog import get_run

    run = get_run(state.ws.control_path, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id[:80]!r}; GET /api/v1/pipelines lists the last ones")
    if isinstance(run.get("detail"), str):
        with contextlib.suppress(ValueError):
            run["detail"] = json.loads(run["detail"])
    return state.public.doc(plain(run))


@router.get(
    "/api/v1/pipelines/{pipeline}/quality",
    response_model=schemas.Quality,
    tags=["pipelines"],
    responses=schemas.error_responses(404),
)
def quality(state: State, pipeline: str) -> dict[str, Any]:
    """Quarantined rows by reason and the latest check results."""
    return state.public.doc(_store_reads.quality(state.ws, state.pipeline(pipeline)))
