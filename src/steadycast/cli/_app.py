"""The Typer app every command registers on, its shared options and output helpers, and
``main``: the one place an error becomes a line on stderr and an exit code.

Imports here stay light (typer, rich's console): ``steadycast --help`` loads this module and the
command modules, never the data or forecasting libraries.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

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
PipelineArg = Annotated[str, typer.Argument(help="Pipeline name.")]
OnlyPipelineArg = Annotated[str | None, typer.Argument(help="Only this pipeline.")]


def emit_json(data: Any) -> None:
    """One JSON document on stdout; dates and paths as strings."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def say(text: str) -> None:
    """A line on stdout printed as it is: no markup, no highlighting of numbers or paths."""
    out.print(text, markup=False, highlight=False)


def _version(value: bool) -> None:
    if value:
        out.print(f"steadycast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    workspace: Annotated[
        Path | None,
        typer.Option(
            "-w",
            "--workspace",
            help="Workspace directory for the command that follows, as in "
            "`steadycast -w DIR status` (the command's own -w wins).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    log_format: Annotated[
        str, typer.Option("--log-format", help="Logs on stderr as readable 'text' or 'json' lines.")
    ] = "text",
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            help="DEBUG, INFO, WARNING or ERROR (default: WARNING, with progress lines at INFO "
            "when there is no terminal to draw a progress bar on).",
        ),
    ] = None,
) -> None:
    """steadycast: forecasts that just work."""
    _use_workspace(workspace)
    from steadycast.errors import UsageError
    from steadycast.ops.logging import configure_logging, show_progress

    if log_format not in ("text", "json"):
        raise UsageError(f"--log-format {log_format!r} is not supported; use text or json")
    level = (log_level or "WARNING").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise UsageError(
            f"--log-level {log_level!r} is not a level; use DEBUG, INFO, WARNING or ERROR"
        )
    configure_logging(log_format, level)  # type: ignore[arg-type]
    # Under cron or a scheduler nobody sees a progress bar: progress goes to the log instead.
    show_progress(log_level is None and not interactive())


def interactive() -> bool:
    """True when a person watches: stdout and stderr are both a terminal."""
    return out.is_terminal and err.is_terminal


def _use_workspace(workspace: Path | None) -> None:
    """``-w DIR`` before the command becomes the default of the command's own ``-w``: the
    command's options are read after this callback, from ``$STEADYCAST_WORKSPACE`` when the
    command has no ``-w`` of its own, so one place resolves the workspace for every command."""
    if workspace is not None:
        os.environ["STEADYCAST_WORKSPACE"] = str(workspace)


class progress:
    """A progress bar on a terminal; nothing with --json. Without a terminal the work logs its
    progress instead (``steadycast.progress``, turned on by ``_root``)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and interactive()
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        self._bar.__enter__()

        def update(stage: str, done: int, total: int) -> None:
            if stage not in self._tasks:
                self._tasks[stage] = self._bar.add_task(stage, total=total)
            self._bar.update(self._tasks[stage], completed=done, total=total)

        return update

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def main(argv: list[str] | None = None) -> int:
    """Entry point: turns SteadycastError into a one-line message and its exit code.

    Usage errors (unknown option, missing argument) are reported by the CLI library itself,
    with exit code 2. A full disk is reported in one line too (exit code 1): what was
    committed before it stays, and the same command finishes once there is space again. Any
    other unexpected error is one line as well (exit code 1), never a traceback unless asked
    for (``--log-level DEBUG``).
    """
    try:
        app(args=argv, standalone_mode=True)
    except SteadycastError as exc:
        _print_error(str(exc))
        return exc.exit_code
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception as exc:
        from steadycast.cli._failures import disk_problem, internal_problem

        _print_error(disk_problem(exc) or internal_problem(exc))
        return 1
    return 0


def _print_error(problem: str) -> None:
    err.print("error: ", style="bold red", end="")
    err.print(problem, markup=False, highlight=False)
