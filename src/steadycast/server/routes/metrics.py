"""What the pipelines cost: Prometheus metrics at each scrape, and the top consumers (hogs)."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from steadycast.errors import UsageError
from steadycast.server import schemas
from steadycast.server._encode import plain
from steadycast.server.deps import ServerState, State

__all__ = ["router"]

router = APIRouter(tags=["ops"])
_BUILDING = threading.Lock()


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(state: State, request: Request) -> Response:
    """Prometheus metrics: the workspace's, read from the records at each scrape (see
    ``ops/metrics.py``), this server process's, and its HTTP requests per route."""
    # The request counts are only touched on the event loop: copied here, rendered in a
    # worker thread with the rest (reading the records may wait on the store).
    requests = request.app.state.http_requests.copy()
    body = await run_in_threadpool(_render, request.app, state, requests)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def _render(app: Any, state: ServerState, requests: Any) -> bytes:
    # prometheus_client is loaded on the first scrape, not at start-up.
    from prometheus_client import CollectorRegistry, generate_latest

    from steadycast.ops.metrics import server_registry

    with _BUILDING:  # the workspace and process collectors: built by the first scrape
        registry = getattr(app.state, "metrics_registry", None)
        if registry is None:
            registry = app.state.metrics_registry = server_registry(state.ws)
    served = CollectorRegistry(auto_describe=False)
    served.register(requests)
    return bytes(generate_latest(registry) + generate_latest(served))


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
