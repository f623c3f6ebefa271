"""What the workspace costs and counts: ``metrics`` (Prometheus) and ``hogs`` (the pipelines,
stages and models that use the most CPU or memory)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from steadycast.cli._app import JsonOpt, WorkspaceOpt, emit_json, out


def hogs(
    since: Annotated[str, typer.Option("--since", help="Window: 30m, 12h, 7d, 2w.")] = "7d",
    by: Annotated[str, typer.Option("--by", help="Rank by cpu or memory.")] = "cpu",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Top resource consumers by pipeline, stage and model over a window."""
    from rich.table import Table

    from steadycast.errors import UsageError
    from steadycast.ops.hogs import hogs as find_hogs
    from steadycast.ops.hogs import parse_since
    from steadycast.workspace import Workspace

    if by not in ("cpu", "memory"):
        raise UsageError(f"--by {by!r}: use cpu or memory")
    ws = Workspace.open(workspace)
    ranking = find_hogs(ws, parse_since(since), by=by)  # type: ignore[arg-type]
    if json_out:
        emit_json(ranking)
        return
    for kind in ("pipelines", "stages", "models"):
        rows = ranking.get(kind) or []
        table = Table(title=f"{kind} by {by}, since {ranking['since']}")
        if not rows:
            out.print(f"No {kind} recorded since {ranking['since']}.")
            continue
        for col in rows[0]:
            table.add_column(str(col))
        for row in rows:
            table.add_row(*(f"{v:,.2f}" if isinstance(v, float) else str(v) for v in row.values()))
        out.print(table)


def metrics(
    textfile: Annotated[
        Path | None,
        typer.Option("--textfile", help="Write for node-exporter's textfile collector (*.prom)."),
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Prometheus metrics of the workspace: on stdout, or as a textfile when no server runs.

    The server's /metrics has the same, plus its process and HTTP request metrics.
    """
    from steadycast.ops.metrics import render_metrics, write_textfile
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    if textfile is None:
        sys.stdout.write(render_metrics(ws).decode())
    else:
        out.print(f"wrote {write_textfile(ws, textfile)}", markup=False)
