"""What a pipeline has done and what it serves: ``status``, ``runs``, ``releases``,
``forecast`` (the current release exported) and ``report`` (one run as HTML)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from steadycast.cli._app import (
    JsonOpt,
    OnlyPipelineArg,
    PipelineArg,
    WorkspaceOpt,
    emit_json,
    out,
)


def status(
    pipeline: OnlyPipelineArg = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Each pipeline at a glance: last run, gate, current release, open incidents, recent audit."""
    from steadycast.pipeline.status import workspace_status
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    doc = workspace_status(ws, pipeline)
    if json_out:
        emit_json(doc)
        return
    for st in doc["pipelines"]:
        _print_status(st, ws.root)


def _print_broken(st: dict[str, Any], root: Path) -> None:
    """A pipeline whose file does not load: what is wrong first, then how to see it all."""
    from steadycast.ops import advice

    for number, line in enumerate(str(st["config_error"]).splitlines()):
        out.print(("  BROKEN:          " if number == 0 else " " * 19) + line, markup=False)
    out.print(
        f"  to see every problem: {advice.command(root, 'validate')}",
        markup=False,
        highlight=False,
    )


def _print_status(st: dict[str, Any], root: Path) -> None:
    last = st["last_run"] or {}
    out.rule(f"[bold]{st['pipeline']}")
    if st.get("broken"):
        _print_broken(st, root)
    out.print(
        f"  last run:        {last.get('run_id', '-')} {last.get('finished_at') or ''}",
        markup=False,
        highlight=False,
    )
    if last:
        out.print(f"  outcome:         {last.get('outcome')}", markup=False, highlight=False)
    failed = [g for g in st["gate"] if not g["passed"]]
    gate_text = (
        "no gate yet"
        if not st["gate"]
        else ("passed" if not failed else "; ".join(g["detail"] for g in failed))
    )
    out.print(f"  gate:            {gate_text}", markup=False, highlight=False)
    out.print(f"  current release: {st['current_release'] or '-'}")
    sla_state = st.get("sla") or {}
    out.print(
        f"  SLA:             {sla_state.get('state', '-')}: {sla_state.get('sentence', '')}",
        markup=False,
    )
    out.print(f"  open incidents:  {st['open_incidents']}")
    for sink in st.get("sinks") or []:
        held = f"holds release {sink['release_id'] or '-'}"
        if sink["state"] == "pending":
            held += f", behind the current release: {sink['error']}"
        out.print(f"  sink:            {sink['sink']}: {held}", markup=False, highlight=False)
    if last.get("status") == "held":
        from steadycast.ops import advice

        out.print(
            f"  to publish it:   {advice.approve(root, last['run_id'])}",
            markup=False,
            highlight=False,
        )
    for entry in st["audit"][:5]:
        out.print(
            f"    {entry['at'][:19]} {entry['actor']}: {entry['action']} {entry.get('subject') or ''}"
            + (f" ({entry['reason']})" if entry.get("reason") else ""),
            markup=False,
            highlight=False,
        )


def runs(
    pipeline: OnlyPipelineArg = None,
    limit: Annotated[int, typer.Option(help="Newest runs to show.")] = 20,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run history with per-stage wall time, CPU time, peak memory and rows."""
    from steadycast.ops.hogs import run_history
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    if pipeline is not None:
        ws.pipeline(pipeline)
    history = run_history(ws, pipeline, limit=limit)
    if json_out:
        emit_json({"runs": history})
        return
    if not history:
        out.print("No runs yet.")
        return
    _print_history(history)


_NUMBERS = ("wall s", "cpu s", "peak MB", "rows in", "rows out")


def _print_history(history: list[dict[str, Any]]) -> None:
    """One row per stage; the run's id, status and start only on its first row."""
    from rich.table import Table

    table = Table(title="runs (newest first)")
    for col in ("run", "status", "started", "stage", *_NUMBERS):
        table.add_column(col, justify="right" if col in _NUMBERS else "left")
    for r in history:
        first = True
        for st in r.get("stages") or [{}]:
            table.add_row(
                r["run_id"] if first else "",
                r.get("outcome") or r["status"] if first else "",
                str(r.get("started_at", ""))[:19] if first else "",
                str(st.get("name", "")),
                _num(st.get("wall_s")),
                _num(st.get("cpu_s")),
                _num(st.get("peak_rss_mb"), 0),
                _num(st.get("rows_in"), 0),
                _num(st.get("rows_out"), 0),
            )
            first = False
    out.print(table)


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return ""
    return f"{value:,.{digits}f}"


def releases(
    pipeline: PipelineArg,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Release history of a pipeline, newest first; the current one is marked."""
    from steadycast.pipeline.status import release_history
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    doc = release_history(ws, pipeline)
    if json_out:
        emit_json(doc)
        return
    if not doc["releases"]:
        from steadycast.ops import advice

        out.print(
            f"No releases of {pipeline} yet; run `{advice.command(ws.root, 'run', pipeline)}`."
        )
        return
    _print_releases(pipeline, doc["releases"])


def _print_releases(pipeline: str, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=f"releases of {pipeline}")
    for col in ("", "release", "created", "series", "rows", "content"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            "*" if r["current"] else "",
            r["release_id"],
            str(r.get("created_at", "")),
            f"{r.get('series', 0):,}",
            f"{r.get('rows', 0):,}",
            str(r.get("content_sha256", ""))[:12],
        )
    out.print(table)


def forecast(
    pipeline: PipelineArg,
    series: Annotated[
        list[str] | None, typer.Option("--series", help="Only this series (repeatable).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv, parquet or json.")] = "csv",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to this file instead of stdout.")
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Export the current release: unique_id, ds, yhat, model, yhat_lo_L, yhat_hi_L."""
    from steadycast.storage.export import export_forecast
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    export_forecast(ws, pipeline, series=series or None, fmt=fmt, output=output, stdout=sys.stdout)


def report(
    run_id: Annotated[
        str,
        typer.Argument(
            help="The run to report on: its id, 'latest', or a pipeline's name (its newest run)."
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the HTML file.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """A self-contained HTML report of one run (plots included, works offline)."""
    from steadycast.report import write_report
    from steadycast.storage.run_ref import resolve_run
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    resolved = resolve_run(ws, run_id)
    path = write_report(ws, resolved, output)
    out.print(f"wrote {path} (run {resolved})", markup=False, highlight=False)
