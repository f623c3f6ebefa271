"""What the routes depend on: the server's state (workspace, settings, release caches) and the
token checks, as FastAPI dependencies.

``create_app`` puts one ``ServerState`` on ``app.state.server``; routes take it as ``State`` and
writes take the audited actor as ``Actor``. The dependencies are ``async`` on purpose: FastAPI
runs a plain ``def`` dependency in its thread pool, and that hop alone halves the forecast
route's throughput.
"""

# No `from __future__ import annotations`: FastAPI reads the Annotated aliases at run time.
import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from steadycast.config import PIPELINE_NAME
from steadycast.errors import NotFoundError
from steadycast.server.exposure import PublicView
from steadycast.server.settings import HOW_TO_CONFIGURE, ServerSettings
from steadycast.workspace import Workspace

if TYPE_CHECKING:
    from steadycast.server.cache import ReleaseCache, Snapshot

__all__ = [
    "Actor",
    "Creds",
    "ServerState",
    "State",
    "bearer",
    "require_read",
    "require_write",
    "state_of",
]

bearer = HTTPBearer(auto_error=False, description="the API token (STEADYCAST_API_TOKEN)")
Creds = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


class ServerState:
    """The state behind the routes: the workspace, the settings and the release caches."""

    def __init__(self, ws: Workspace, settings: ServerSettings) -> None:
        self.ws = ws
        self.settings = settings
        # Every read answers without the machine's details (paths, pids, hosts, OS users).
        self.public = PublicView(ws.root)
        self.caches: dict[str, ReleaseCache] = {}

    def pipeline(self, name: str) -> str:
        """The name, once it is known to be a pipeline; it only becomes a path after the check."""
        if not PIPELINE_NAME.match(name) or not self.pipeline_file(name).is_file():
            known = ", ".join(self.ws.pipeline_names()) or "none yet"
            raise NotFoundError(f"no pipeline {name[:80]!r} (known: {known})")
        return name

    def pipeline_file(self, name: str) -> Path:
        return self.ws.pipelines_dir / f"{name}.toml"

    def cache(self, pipeline: str) -> "ReleaseCache":
        # Loaded on the first forecast read: it brings pyarrow's Parquet reader.
        from steadycast.server.cache import ReleaseCache

        name = self.pipeline(pipeline)
        found = self.caches.get(name)
        if found is None:
            found = self.caches.setdefault(
                name, ReleaseCache(self.ws.releases_dir, name, self.pipeline_file(name))
            )
        return found

    def refresh(self, pipeline: str) -> None:
        """Serve the pipeline's current release from the next read on, whatever the pointer's
        mtime says (a lever just moved it)."""
        if PIPELINE_NAME.match(pipeline):
            self.cache(pipeline).refresh()

    def snapshot_now(self, cache: "ReleaseCache") -> "Snapshot":
        """The current snapshot, loading it in this (worker) thread if the pointer moved."""
        held = cache.peek()
        if held is None or not cache.is_fresh():
            held = cache.refresh()
        return _required(cache, held)

    async def snapshot(self, cache: "ReleaseCache") -> "Snapshot":
        """The current snapshot without ever making a request wait on a release being read.

        When the pointer has moved, the held snapshot is served while a background thread
        loads the new release (old or new, never half); only the very first request of a
        pipeline, with nothing held yet, waits for its load (in a worker thread).
        """
        held = cache.serving()
        if held is not None:
            return held
        return _required(cache, await anyio.to_thread.run_sync(cache.refresh))

    def check_token(self, creds: HTTPAuthorizationCredentials | None) -> None:
        token = self.settings.token
        if token is None:
            raise HTTPException(403, HOW_TO_CONFIGURE)
        if creds is None or not creds.credentials:
            raise HTTPException(
                401,
                "this request needs an API token: send `Authorization: Bearer TOKEN`",
                headers={"WWW-Authenticate": 'Bearer realm="steadycast"'},
            )
        if not hmac.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(403, "the API token is not valid")


def _required(cache: "ReleaseCache", held: "Snapshot | None") -> "Snapshot":
    if held is None:
        raise NotFoundError(
            f"pipeline {cache.pipeline!r} has no published release yet; "
            f"run `steadycast run {cache.pipeline}`"
        )
    return held


def state_of(request: Request) -> ServerState:
    """The state ``create_app`` put on the app. The async forecast routes call this directly:
    even this dependency, solved per request, costs them about a tenth of their throughput."""
    return cast(ServerState, request.app.state.server)


async def get_state(request: Request) -> ServerState:
    return state_of(request)


State = Annotated[ServerState, Depends(get_state)]


async def require_write(state: State, creds: Creds) -> str:
    """The actor the audit log names for this write, once its token is checked."""
    state.check_token(creds)
    return state.settings.actor


async def require_read(state: State, creds: Creds) -> None:
    """Added to the read routes only when ``[server] read_token_required = true``: open reads
    carry no dependency at all, since solving even an empty one costs on the hot path."""
    if state.settings.read_token_required:
        state.check_token(creds)


Actor = Annotated[str, Depends(require_write)]
