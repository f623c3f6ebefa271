"""Start work over HTTP, for a scheduler: ingest a pipeline's configured source, start a run,
poll it. Both writes need the token and are audited as ``api:<token_name>``; both run the CLI
in a child process (``steadycast ingest NAME --json``, ``steadycast run NAME --json``), the same
code as from cron, so the server never loads the data or forecasting libraries.

An ingest answers when its batches are stored (the request waits; a source is read in
minutes at most). A run answers at once, 202 with its run id and a URL to poll
(``server/triggers.py``): runs take far longer than a request should stay open."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
import json
import os
import subprocess
import sys
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from steadycast.server import schemas
from steadycast.server.deps import Actor, State
from steadycast.server.middleware import error_response
from steadycast.server.triggers import RunInProgress, triggers_of

__all__ = ["INGEST_TIMEOUT_S", "router"]

router = APIRouter()

#: How long an ingest request may take before it is stopped (its stored batches stay).
INGEST_TIMEOUT_S = 3600.0

_INGEST_FAILED: dict[int | str, dict[str, Any]] = {
    422: {
        "model": schemas.ErrorBody,
        "description": "the configured source could not be ingested (the message names the "
        "file or URL and the problem; `detail.batches` lists those stored before it)",
    }
}


@router.post(
    "/api/v1/pipelines/{pipeline}/ingest",
    response_model=schemas.IngestResult,
    tags=["pipelines"],
    responses={**schemas.error_responses(400, 401, 403, 404), **_INGEST_FAILED},
)
def ingest(state: State, pipeline: str, actor: Actor) -> Any:
    """Ingest the pipeline's configured ``[source]`` (its path, folder, glob, ``s3://`` URL
    or query); answers with each batch as ``steadycast ingest --json`` prints it."""
    name = state.pipeline(pipeline)
    argv = [sys.executable, "-m", "steadycast.cli", "ingest", name, "--json"]
    argv += ["-w", str(state.ws.root)]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            env={**os.environ, "STEADYCAST_ACTOR": actor},
            cwd=state.ws.root,
            timeout=INGEST_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise HTTPException(
            504, f"the ingest of {name!r} took over {INGEST_TIMEOUT_S:.0f} s and was stopped"
        ) from None
    doc = _json(done.stdout)
    batches = doc.get("batches", []) if isinstance(doc, dict) else []
    problem = (doc.get("error") if isinstance(doc, dict) else None) or _last_line(done.stderr)
    if done.returncode == 0:
        return {"pipeline": name, "batches": batches, "actor": actor}
    message = state.public.text(problem or f"exit code {done.returncode}")
    if done.returncode == 2:  # no source configured, a configuration error: the caller's to fix
        return error_response(400, "bad request", message)
    return JSONResponse(
        {"error": "ingest failed", "detail": {"message": message, "batches": batches}},
        status_code=422,
    )


@router.post(
    "/api/v1/pipelines/{pipeline}/runs",
    response_model=schemas.RunStarted,
    status_code=202,
    tags=["runs"],
    responses=schemas.error_responses(400, 401, 403, 404, 409),
)
def start_run(
    state: State,
    pipeline: str,
    actor: Actor,
    body: Annotated[schemas.RunRequest | None, Body()] = None,
) -> Any:
    """Start a run of the pipeline (``steadycast run NAME``; skipped when nothing is new unless
    ``force``) and answer at once with its id and the URL to poll; 409 while a run of it is in
    progress."""
    name = state.pipeline(pipeline)
    force = bool(body and body.force)
    try:
        started = triggers_of(state).start_run(name, force=force, actor=actor)
    except RunInProgress as exc:
        return error_response(409, "conflict", state.public.text(str(exc)))
    poll = f"/api/v1/pipelines/{name}/runs/{started.run_id}"
    return JSONResponse(
        {
            "pipeline": name,
            "run_id": started.run_id,
            "status": "started",
            "poll": poll,
            "actor": actor,
        },
        status_code=202,
        headers={"Location": poll},
    )


@router.get(
    "/api/v1/pipelines/{pipeline}/runs/{run_id}",
    response_model=schemas.RunProgress,
    tags=["runs"],
    responses=schemas.error_responses(404),
)
def run_progress(state: State, pipeline: str, run_id: str) -> dict[str, Any]:
    """Where a run is (``starting``, ``running``) and, once ``finished``, how it ended, with
    the exit code the CLI would have given (0, 3, 1, 2; 4: published with a sink behind)."""
    name = state.pipeline(pipeline)
    return state.public.doc(triggers_of(state).state(name, run_id))


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode(errors="replace") or "null")
    except ValueError:
        return None


def _last_line(raw: bytes) -> str | None:
    lines = [line for line in raw.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].removeprefix("error: ") if lines else None
