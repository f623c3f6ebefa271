"""The forecasts of a pipeline's current release: all of them, some series, or one series with
its history, actuals and provenance. Served from memory (``cache.py``), never from DuckDB.

``ForecastFastPath`` answers the common forecast read before FastAPI's routing, with the exact
bytes the route would send; it lives here so the two cannot drift apart.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from steadycast.errors import NotFoundError, StoreBusyError, UsageError, WorkspaceError
from steadycast.server import schemas
from steadycast.server._store_reads import series_store
from steadycast.server.deps import ServerState, State, state_of

if TYPE_CHECKING:
    from steadycast.server.cache import Snapshot

__all__ = ["RELEASE_HEADER", "ForecastFastPath", "router"]

RELEASE_HEADER = "X-Steadycast-Release"
FORMATS = ("json", "csv", "parquet")
PARQUET = "application/vnd.apache.parquet"
MAX_ID_ECHO = 5

router = APIRouter(tags=["pipelines"])


def _names(ids: list[str]) -> str:
    shown = ", ".join(repr(i[:80]) for i in ids[:MAX_ID_ECHO])
    more = len(ids) - MAX_ID_ECHO
    return shown + (f" and {more} more" if more > 0 else "")


def _header_value(text: str) -> str:
    """A release id as a header value (ids are ASCII in practice; anything else is escaped)."""
    return quote(text, safe="!#$&'()*+,-./:;<=>?@[]^_`{|}~ ")


def _payload(
    snap: "Snapshot", ids: list[str] | None, fmt: str
) -> tuple[bytes, str, str] | list[str]:
    """(body, media type, release header) of a forecast response, or the ids not in it."""
    if ids:
        wanted = list(dict.fromkeys(ids))
        missing = [i for i in wanted if i not in snap.json_rows]
        if missing:
            return missing
    else:
        wanted = snap.series
    release = _header_value(snap.release_id)
    if fmt == "parquet":
        return _parquet(snap, wanted if ids else None), PARQUET, release
    if fmt == "csv":
        lines = snap.csv_rows()
        body = snap.csv_header() + b"".join(lines[i] + b"\n" for i in wanted)
        return body, "text/csv; charset=utf-8", release
    rows = snap.json_rows
    body = b"".join((snap.json_head, b",".join(rows[i] for i in wanted), b"]}"))
    return body, "application/json", release


def _parquet(snap: "Snapshot", wanted: list[str] | None) -> bytes:
    """The release's rows (of ``wanted`` series, in that order) as one Parquet file, written
    by pyarrow into memory: a release is small next to the server's memory copy of it."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = snap.table
    if wanted is not None:
        position = pc.index_in(table["unique_id"], value_set=pa.array(wanted, pa.string()))
        table = table.append_column("_order", position).filter(pc.is_valid(position))
        table = table.take(pc.sort_indices(table["_order"])).drop_columns(["_order"])
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


@router.get(
    "/api/v1/pipelines/{pipeline}/forecast",
    response_model=schemas.ForecastResponse,
    responses={
        200: {
            "description": "the rows of the current release, in the export columns; the "
            f"release id is also in the `{RELEASE_HEADER}` header",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                PARQUET: {"schema": {"type": "string", "format": "binary"}},
            },
            "headers": {RELEASE_HEADER: {"schema": {"type": "string"}}},
        },
        **schemas.error_responses(400, 404),
    },
)
async def forecast(
    request: Request,
    pipeline: str,
    series: Annotated[
        list[str] | None, Query(description="a series id; repeat for several")
    ] = None,
    format: Annotated[str, Query(description="json, csv or parquet")] = "json",
) -> Response:
    """The pipeline's current release (or some of its series), from memory."""
    state = state_of(request)
    if format not in FORMATS:
        raise UsageError(f"format {format[:20]!r} is not supported; use json, csv or parquet")
    snap = await state.snapshot(state.cache(pipeline))
    payload = _payload(snap, series, format)
    if isinstance(payload, list):
        raise NotFoundError(
            f"no series {_names(payload)} in release {snap.release_id} of {snap.pipeline!r}"
        )
    body, media_type, release = payload
    return Response(body, media_type=media_type, headers={RELEASE_HEADER: release})


@router.get(
    "/api/v1/pipelines/{pipeline}/series",
    response_model=schemas.SeriesList,
    responses=schemas.error_responses(404),
)
async def series_list(
    request: Request,
    pipeline: str,
    prefix: Annotated[str, Query(description="only ids starting with this")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    """Series ids of the current release (for search boxes), in id order."""
    state = state_of(request)
    snap = await state.snapshot(state.cache(pipeline))
    found = [s for s in snap.series if s.startswith(prefix)] if prefix else snap.series
    return {
        "pipeline": snap.pipeline,
        "release_id": snap.release_id,
        "total": len(found),
        "series": found[:limit],
    }


@router.get(
    "/api/v1/pipelines/{pipeline}/series/{series_id:path}",
    response_model=schemas.SeriesDetail,
    responses=schemas.error_responses(400, 404),
)
def series_detail(
    state: State,
    pipeline: str,
    series_id: str,
    history: Annotated[int, Query(ge=1, le=20_000, description="points of history")] = 336,
) -> dict[str, Any]:
    """One series: its forecast, the tail of its history, realised actuals, and provenance
    (the model and why it was chosen, or which fallback and why)."""
    snap = state.snapshot_now(state.cache(pipeline))
    rows_json = snap.json_rows.get(series_id)
    if rows_json is None:
        raise NotFoundError(
            f"no series {series_id[:80]!r} in release {snap.release_id} of {pipeline!r}"
        )
    rows = json.loads(b"[" + rows_json + b"]")
    start = end = None
    if rows:
        start = datetime.strptime(rows[0]["ds"], "%Y-%m-%dT%H:%M:%SZ")
        end = datetime.strptime(rows[-1]["ds"], "%Y-%m-%dT%H:%M:%SZ")
    note = None
    hist: list[dict[str, Any]] | None
    acts: list[dict[str, Any]] | None
    try:
        hist, acts = series_store(state.ws, pipeline, series_id, start, end, history)
    except (StoreBusyError, WorkspaceError) as exc:
        hist = acts = None
        note = state.public.text(f"history not available right now: {exc}")
    levels = snap.manifest.get("levels") or sorted(
        int(c.rsplit("_", 1)[1]) for c in snap.columns if c.startswith("yhat_lo_")
    )
    return {
        "pipeline": pipeline,
        "series_id": series_id,
        "release_id": snap.release_id,
        "levels": [int(v) for v in levels],
        "forecast": rows,
        "history": hist,
        "actuals": acts,
        "provenance": state.public(jsonable_encoder(snap.provenance.get(series_id))),
        "note": note,
    }


class ForecastFastPath:
    """The forecast route without FastAPI's routing and parameter solving, for the common case.

    A single-series read is the hot path (thousands per second), and FastAPI's per-request
    machinery costs more than building the answer. This ASGI layer answers a plain
    ``GET .../forecast`` whose pipeline is cached and fresh and whose series all exist, with
    exactly the bytes and headers the FastAPI route would send; anything else (an unknown name,
    a bad format, an unexpected parameter, a token-protected server, a release still to load)
    falls through to the route, which documents it and produces the uniform errors.
    """

    PREFIX = "/api/v1/pipelines/"
    SUFFIX = "/forecast"
    PARAMS = frozenset({"series", "format"})

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            answer = self._answer(scope)
            if answer is not None:
                body, media_type, release = answer
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-length", str(len(body)).encode()),
                            (b"content-type", media_type.encode()),
                            (RELEASE_HEADER.lower().encode(), release.encode("latin-1")),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _answer(self, scope: Scope) -> tuple[bytes, str, str] | None:
        path: str = scope["path"]
        if not (path.startswith(self.PREFIX) and path.endswith(self.SUFFIX)):
            return None
        if self.state.settings.read_token_required:
            return None
        cache = self.state.caches.get(path[len(self.PREFIX) : -len(self.SUFFIX)])
        if cache is None or not cache.pipeline_file.is_file():
            return None
        snap = cache.serving()
        if snap is None:
            return None
        query = QueryParams(scope["query_string"])
        if not self.PARAMS.issuperset(query.keys()):
            return None
        fmt = query.get("format", "json")
        if fmt not in FORMATS or len(query.getlist("format")) > 1:
            return None
        payload = _payload(snap, query.getlist("series") or None, fmt)
        return None if isinstance(payload, list) else payload
