"""What the pipelines cost: Prometheus metrics at each scrape, and the top consumers (hogs)."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from steadycast.errors import UsageError
from steadycast.server import schemas
from steadycast.server._encode import plain
from steadycast.server.deps import State

__all__ = ["router"]

router = APIRouter(tags=["ops"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(state: State) -> Response:
    """Prometheus metrics, read from the records at each scrape (see ``ops/metrics.py``)."""
    # prometheus_client is loaded on the first scrape, not at start-up.
    from steadycast.ops.metrics import render_metrics

    return Response(render_metrics(state.ws), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/api/v1/hogs", response_model=schemas.Hogs, responses=schemas.error_responses(400))
def hogs(
    state: State,
    since: Annotated[str, Query(description="30m, 12h, 7d, 2w ...")] = "7d",
    by: Annotated[str, Query(description="cpu or memory")] = "cpu",
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """The top consumers by pipeline, stage and model."""
    from steadycast.ops import hogs as hogs_mod

    if by not in ("cpu", "memory"):
        raise UsageError(f"by {by[:20]!r} is not one of cpu, memory")
    span = hogs_mod.parse_since(since)
    if span.days > 3650:
        raise UsageError(f"since {since[:20]!r} is longer than ten years")
    return state.public.doc(plain(hogs_mod.hogs(state.ws, span, by=by, limit=limit)))  # type: ignore[arg-type]
