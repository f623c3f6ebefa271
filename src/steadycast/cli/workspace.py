"""``steadycast init``: create a workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steadycast.cli._app import JsonOpt, emit_json, out


def init(
    directory: Annotated[Path, typer.Argument(help="Directory of the new workspace.")],
    json_out: JsonOpt = False,
) -> None:
    """Create a workspace: steadycast.toml, pipelines/ with an example, and the store."""
    from steadycast.workspace import Workspace

    ws = Workspace.init(directory)
    if json_out:
        emit_json({"workspace": str(ws.root), "pipelines": ws.pipeline_names()})
        return
    out.print(f"Created workspace [bold]{ws.root}[/bold]")
    out.print(f"  settings:  {ws.settings_file}")
    out.print(
        f"  pipelines: {ws.pipelines_dir} (rename pipelines/example.toml to NAME.toml and edit it)"
    )
    out.print(f"  store:     {ws.store_path}")
