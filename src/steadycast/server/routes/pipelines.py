"""The pipelines at a glance (for the dashboard) and each pipeline's release history."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
from typing import Any

from fastapi import APIRouter
from fastapi.encoders import jsonable_encoder

from steadycast.server import schemas
from steadycast.server._encode import plain
from steadycast.server.deps import State

__all__ = ["router"]

router = APIRouter()


@router.get("/api/v1/pipelines", response_model=schemas.PipelineList, tags=["pipelines"])
def pipelines(state: State) -> dict[str, Any]:
    """Every pipeline with its last run, gate results, current release and incidents."""
    # The summaries read the run history and the SLA; loaded on the first call.
    from steadycast.pipeline.status import pipeline_summaries

    public = state.public
    out = []
    for summary in pipeline_summaries(state.ws):
        last, gate = summary["last_run"], summary["gate"]
        out.append(
            {
                **summary,
                "last_run": public(jsonable_encoder(last)) if last else None,
                "gate": public(gate) if gate is not None else None,
            }
        )
    return {"pipelines": out}


@router.get(
    "/api/v1/pipelines/{pipeline}/releases",
    response_model=schemas.ReleaseList,
    tags=["releases"],
    responses=schemas.error_responses(404),
)
def release_list(state: State, pipeline: str) -> dict[str, Any]:
    """Release history, newest first, with the current one marked."""
    from steadycast.storage import releases

    name = state.pipeline(pipeline)
    ws = state.ws
    current_id = releases.current_id(ws.releases_dir, name)
    items = [
        {
            **{k: v for k, v in rel.manifest.items() if k != "pipeline"},
            "release_id": rel.release_id,
            "current": rel.release_id == current_id,
        }
        for rel in releases.list_releases(ws.releases_dir, name)
    ]
    return state.public.doc(
        plain({"pipeline": name, "current_release": current_id, "releases": items})
    )
