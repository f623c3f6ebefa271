"""A run as recorded (stages with wall, CPU, peak memory and rows; model usage) and a
pipeline's data quality (quarantine by reason, the latest check results)."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
import contextlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query

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
    """One run with its stages (wall, CPU, peak memory, rows, detail) and model usage, and
    its outcome: how it ended and what happened after ("held, then approved by NAME: ...")."""
    from steadycast.storage.outcome import outcome
    from steadycast.storage.runlog import get_run

    run = get_run(state.ws.control_path, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id[:80]!r}; GET /api/v1/pipelines lists the last ones")
    run["outcome"] = outcome(run["status"], run.get("detail"))
    for record in [run, *run["stages"]]:
        # Stored as JSON text; served as the object it is (an old free-text detail as text).
        if isinstance(record.get("detail"), str):
            with contextlib.suppress(ValueError):
                record["detail"] = json.loads(record["detail"])
    return state.public.doc(plain(run))


@router.get(
    "/api/v1/pipelines/{pipeline}/quality",
    response_model=schemas.Quality,
    tags=["pipelines"],
    responses=schemas.error_responses(404),
)
def quality(
    state: State,
    pipeline: str,
    limit: Annotated[int, Query(ge=1, le=1000, description="Check results per page.")] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62, description="Check results to skip.")] = 0,
) -> dict[str, Any]:
    """Quarantined rows by reason and one page of the latest check results, failures first
    (``checks_total`` says how many there are; page on with ``offset``)."""
    doc = _store_reads.quality(state.ws, state.pipeline(pipeline), limit=limit, offset=offset)
    return state.public.doc(doc)
