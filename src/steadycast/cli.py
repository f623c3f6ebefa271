"""The ``steadycast`` command line: a thin layer over the Python API.

Exit codes: 0 success; 1 failure; 2 usage or configuration error; 3 run held by a gate.
Every command takes ``-w/--workspace`` (default ``$STEADYCAST_WORKSPACE``, else the current
directory); commands that report take ``--json`` for machine-readable output on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from steadycast import __version__
from steadycast.errors import SteadycastError

app = typer.Typer(
    name="steadycast",
    help="Forecasts that just work: ingest, check, backtest, forecast, gate and publish.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "-w",
        "--workspace",
        envvar="STEADYCAST_WORKSPACE",
        help="Workspace directory (default: $STEADYCAST_WORKSPACE, else the current directory).",
        show_envvar=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _version(value: bool) -> None:
    if value:
        out.print(f"steadycast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """steadycast: forecasts that just work."""


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Directory of the new workspace.")],
    json_out: JsonOpt = False,
) -> None:
    """Create a workspace: steadycast.toml, pipelines/ with an example, and the store."""
    from steadycast.workspace import Workspace

    ws = Workspace.init(directory)
    if json_out:
        _emit_json({"workspace": str(ws.root), "pipelines": ws.pipeline_names()})
        return
    out.print(f"Created workspace [bold]{ws.root}[/bold]")
    out.print(f"  settings:  {ws.settings_file}")
    out.print(f"  pipelines: {ws.pipelines_dir} (edit pipelines/example.toml to start)")
    out.print(f"  store:     {ws.store_path}")


@app.command()
def ingest(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name (pipelines/NAME.toml).")],
    files: Annotated[list[Path], typer.Argument(help="CSV (plain or .gz) or Parquet files.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Store the rows of each file as one batch; bad rows are quarantined with a reason."""
    from steadycast.stages.ingest import ingest_file
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    cfg = ws.pipeline(pipeline)
    results = []
    failure: SteadycastError | None = None
    for file in files:
        try:
            results.append(ingest_file(ws, cfg, file))
        except SteadycastError as exc:
            failure = exc
            break
    if json_out:
        doc: dict[str, Any] = {"pipeline": pipeline, "batches": [r.contract() for r in results]}
        if failure is not None:
            doc["error"] = str(failure)
        _emit_json(doc)
    elif results:
        table = Table(title=f"ingest into {pipeline}", show_lines=False)
        for col in ("file", "batch", "status", "read", "stored", "quarantined", "reasons"):
            table.add_column(
                col, justify="right" if col in ("read", "stored", "quarantined") else "left"
            )
        for r in results:
            reasons = ", ".join(f"{k} {v}" for k, v in r.quarantine_reasons.items())
            table.add_row(
                r.file,
                r.batch_id,
                r.status,
                f"{r.rows_read:,}",
                f"{r.rows_stored:,}",
                f"{r.rows_quarantined:,}",
                reasons,
            )
        out.print(table)
    if failure is not None:
        raise failure


@app.command()
def quarantine(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name.")],
    limit: Annotated[int, typer.Option(help="Show at most this many rows.")] = 200,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Quarantined rows with their reasons, file and line."""
    from steadycast.stages.ingest import quarantined
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    rows = quarantined(ws, pipeline, limit=limit)
    if json_out:
        _emit_json({"pipeline": pipeline, "rows": rows})
        return
    if not rows:
        out.print(f"No quarantined rows in {pipeline}.")
        return
    table = Table(title=f"quarantine of {pipeline} (newest batch first, at most {limit})")
    for col in ("file", "line", "reason", "detail", "raw"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["file"]), str(r["line"]), r["reason"], r["detail"] or "", r["raw"] or ""
        )
    out.print(table)


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Where to create the demo workspace.")] = Path(
        "demo-workspace"
    ),
    json_out: JsonOpt = False,
) -> None:
    """The whole job on the bundled real sample (smart meters from the SGSC trial)."""
    from steadycast.demo import run_demo

    run_demo(directory, out, json_out=json_out)


def main(argv: list[str] | None = None) -> int:
    """Entry point: turns SteadycastError into a one-line message and its exit code."""
    try:
        app(args=argv, standalone_mode=False)
    except SteadycastError as exc:
        err.print("error: ", style="bold red", end="")
        err.print(str(exc), markup=False, highlight=False)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err.print("aborted")
        return 1
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
