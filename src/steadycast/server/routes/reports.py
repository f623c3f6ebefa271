"""A run's HTML report over HTTP: the page ``steadycast report`` writes, so that the link in an
alert opens in a browser."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
import dataclasses

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from steadycast.errors import NotFoundError
from steadycast.server import schemas
from steadycast.server.deps import State
from steadycast.server.exposure import ACTOR_KEYS

__all__ = ["router"]

router = APIRouter()


@router.get(
    "/api/v1/runs/{run_id}/report",
    response_class=HTMLResponse,
    tags=["runs"],
    responses=schemas.error_responses(404),
)
def run_report(state: State, run_id: str) -> HTMLResponse:
    """The run's self-contained HTML report (plots included), as ``steadycast report`` writes
    it, without what an open read never shows: the machine (pid, host), paths, OS users."""
    from steadycast.report import collect
    from steadycast.report.html import render
    from steadycast.storage.runlog import get_run

    if get_run(state.ws.control_path, run_id) is None:
        raise NotFoundError(f"no run {run_id[:80]!r}; GET /api/v1/pipelines lists the last ones")
    data = collect(state.ws, run_id)
    incidents = data.incidents.copy()
    for column in ACTOR_KEYS & set(incidents.columns):
        incidents[column] = incidents[column].map(state.public.actor)
    public = dataclasses.replace(data, run=state.public.doc(data.run), incidents=incidents)
    return HTMLResponse(state.public.text(render(public)))
