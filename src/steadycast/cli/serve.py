"""``steadycast serve``: the HTTP API and the dashboard."""

from __future__ import annotations

from typing import Annotated

import typer

from steadycast.cli._app import WorkspaceOpt, err


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    workspace: WorkspaceOpt = None,
) -> None:
    """The HTTP API (/api/v1, its docs at /api/docs) and the dashboard (/)."""
    from steadycast.server import serve as run_server
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    err.print(
        f"serving {ws.root} on http://{host}:{port}/ (API under /api/v1, docs at "
        f"http://{host}:{port}/api/docs)",
        markup=False,
    )
    run_server(ws, host=host, port=port)
