"""The ``steadycast`` command line: a thin layer over the Python API.

Exit codes: 0 success; 1 failure; 2 usage or configuration error; 3 run held by a gate.
Every command takes ``-w/--workspace`` (default ``$STEADYCAST_WORKSPACE``, else the current
directory); commands that report take ``--json`` for machine-readable output on stdout.
"""

from __future__ import annotations

import json
import shlex
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
    log_format: Annotated[
        str, typer.Option("--log-format", help="Logs on stderr as readable 'text' or 'json' lines.")
    ] = "text",
    log_level: Annotated[
        str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "WARNING",
) -> None:
    """steadycast: forecasts that just work."""
    from steadycast.errors import UsageError
    from steadycast.ops.logging import configure_logging

    if log_format not in ("text", "json"):
        raise UsageError(f"--log-format {log_format!r} is not supported; use text or json")
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise UsageError(
            f"--log-level {log_level!r} is not a level; use DEBUG, INFO, WARNING or ERROR"
        )
    configure_logging(log_format, log_level.upper())  # type: ignore[arg-type]


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
    from steadycast.ingestion.batch import ingest_file
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    cfg = ws.pipeline(pipeline)
    results = []
    failure: SteadycastError | None = None
    with _progress(enabled=not json_out) as progress:
        for file in files:
            try:
                results.append(ingest_file(ws, cfg, file, progress=progress))
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
    from steadycast.ingestion.batch import quarantined
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
def run(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine",
            help="Where the per-series work runs: local or spark (default: engine.name in "
            "the pipeline file, else local). The release is the same on both.",
        ),
    ] = None,
    spark_master: Annotated[
        str | None,
        typer.Option(
            "--spark-master",
            help="Spark master URL for the spark engine, e.g. local[4], spark://HOST:7077, yarn "
            "(default: engine.spark_master).",
        ),
    ] = None,
) -> None:
    """Check, prepare, backtest and select, forecast, gate and publish one pipeline."""
    from steadycast.pipeline.run import run_pipeline
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    with _progress(enabled=not json_out) as progress:
        result = run_pipeline(
            ws, pipeline, progress=progress, engine=engine, spark_master=spark_master
        )
    if json_out:
        _emit_json(result.as_dict())
    else:
        _print_run(result, ws.root)
    if result.status == "held":
        raise typer.Exit(3)
    if result.status != "published":
        # One line on stderr for whoever runs it from cron: what failed and why.
        err.print("error: ", style="bold red", end="")
        problem = " ".join(str(result.error).split())
        err.print(f"run {result.run_id} failed: {problem}", markup=False, highlight=False)
        raise typer.Exit(1)


def _print_run(result: Any, root: Path) -> None:
    colour = {"published": "green", "held": "yellow"}.get(result.status, "red")
    out.print(f"run [bold]{result.run_id}[/bold]: [{colour}]{result.status}[/{colour}]")
    if result.release_id:
        out.print(
            f"  release {result.release_id}: {result.series:,} series, "
            f"{result.fallback_series:,} on a fallback"
        )
    if result.error:
        out.print(f"  error: {result.error}", markup=False, highlight=False)
    table = Table(show_header=True, box=None, pad_edge=False)
    for col in ("stage", "wall s", "cpu s", "peak MB", "rows in", "rows out"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for s in result.stages:
        table.add_row(
            s["name"],
            f"{s['wall_s']:.2f}",
            f"{s['cpu_s']:.2f}",
            f"{s['peak_rss_mb']:.0f}",
            f"{s['rows_in']:,}",
            f"{s['rows_out']:,}",
        )
    out.print(table)
    if result.status == "held":
        _print_levers(result.run_id, result.pipeline, root)


def _print_levers(run_id: str, pipeline: str, root: Path) -> None:
    """What a person can do about a held run, as commands that work when pasted."""
    from steadycast.ops import advice

    out.print(
        "  The last good release stays current. To publish this run anyway, say why "
        "(it goes to the audit log):",
        markup=False,
        highlight=False,
    )
    out.print(f"    {advice.approve(root, run_id)}", markup=False, highlight=False)
    incidents = advice.command(root, "incidents", "--state", "open", "--pipeline", pipeline)
    out.print(f"  See what held it: {incidents}", markup=False, highlight=False)


class _progress:
    """A progress bar on a terminal, nothing in scripts or with --json."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and out.is_terminal
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


@app.command()
def forecast(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name.")],
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


@app.command()
def releases(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Release history of a pipeline, newest first; the current one is marked."""
    from steadycast.storage import releases as rel
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    ws.pipeline(pipeline)
    current = rel.current_id(ws.releases_dir, pipeline)
    rows = [
        {**r.manifest, "current": r.release_id == current}
        for r in rel.list_releases(ws.releases_dir, pipeline)
    ]
    if json_out:
        _emit_json({"pipeline": pipeline, "current": current, "releases": rows})
        return
    if not rows:
        from steadycast.ops import advice

        out.print(
            f"No releases of {pipeline} yet; run `{advice.command(ws.root, 'run', pipeline)}`."
        )
        return
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


@app.command()
def rollback(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; goes to the audit log.")],
    to: Annotated[
        str | None, typer.Option("--to", help="Release id (default: the previous one).")
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Make an earlier release current again (default: the one before the current)."""
    from steadycast.pipeline.levers import rollback as do_rollback
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    release_id = do_rollback(ws, pipeline, reason, to)
    if json_out:
        _emit_json({"pipeline": pipeline, "current": release_id})
    else:
        out.print(f"{pipeline}: release {release_id} is current again")


@app.command()
def report(
    run_id: Annotated[str, typer.Argument(help="The run to report on.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the HTML file.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """A self-contained HTML report of one run (plots included, works offline)."""
    from steadycast.report import write_report
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    path = write_report(ws, run_id, output)
    out.print(f"wrote {path}")


@app.command()
def runs(
    pipeline: Annotated[str | None, typer.Argument(help="Only this pipeline.")] = None,
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
        _emit_json({"runs": history})
        return
    if not history:
        out.print("No runs yet.")
        return
    table = Table(title="runs (newest first)")
    for col in (
        "run",
        "status",
        "started",
        "stage",
        "wall s",
        "cpu s",
        "peak MB",
        "rows in",
        "rows out",
    ):
        table.add_column(
            col,
            justify="right"
            if col in ("wall s", "cpu s", "peak MB", "rows in", "rows out")
            else "left",
        )
    for r in history:
        first = True
        for st in r.get("stages") or [{}]:
            table.add_row(
                r["run_id"] if first else "",
                r["status"] if first else "",
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


@app.command()
def hogs(
    since: Annotated[str, typer.Option("--since", help="Window: 30m, 12h, 7d, 2w.")] = "7d",
    by: Annotated[str, typer.Option("--by", help="Rank by cpu or memory.")] = "cpu",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Top resource consumers by pipeline, stage and model over a window."""
    from steadycast.errors import UsageError
    from steadycast.ops.hogs import hogs as find_hogs
    from steadycast.ops.hogs import parse_since
    from steadycast.workspace import Workspace

    if by not in ("cpu", "memory"):
        raise UsageError(f"--by {by!r}: use cpu or memory")
    ws = Workspace.open(workspace)
    ranking = find_hogs(ws, parse_since(since), by=by)  # type: ignore[arg-type]
    if json_out:
        _emit_json(ranking)
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


@app.command()
def approve(
    run_id: Annotated[str, typer.Argument(help="The held run to publish.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; goes to the audit log.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Publish a held run (the manual override). A run its data checks stopped before
    forecasting is continued past the stop from its own snapshot, then published."""
    from steadycast.pipeline.levers import approve as do_approve
    from steadycast.storage.runlog import get_run
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    release_id = do_approve(ws, run_id, reason)
    record = get_run(ws.control_path, run_id) or {}
    detail = json.loads(record.get("detail") or "{}")
    overridden = (detail.get("approval") or {}).get("overridden_checks")
    if json_out:
        doc: dict[str, Any] = {"run_id": run_id, "release_id": release_id}
        if overridden:
            doc["overridden_checks"] = overridden
        _emit_json(doc)
        return
    out.print(f"run {run_id} approved: release {release_id} is current", markup=False)
    if overridden:
        out.print(
            f"  continued past its data checks ({', '.join(overridden)}) from its own snapshot: "
            f"{record.get('series') or 0:,} series forecast",
            markup=False,
            highlight=False,
        )
        for g in detail.get("gate", []):
            if not g.get("passed"):
                out.print(
                    f"  output gate (recorded, not holding) {g['check']}: {g['detail']}",
                    markup=False,
                    highlight=False,
                )


StateOpt = Annotated[
    str | None, typer.Option("--state", help="open, acknowledged or resolved (default: all).")
]


@app.command()
def incidents(
    state: StateOpt = None,
    pipeline: Annotated[str | None, typer.Option("--pipeline", help="Only this pipeline.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Incidents, newest first: what needs a person."""
    from steadycast.errors import UsageError
    from steadycast.ops.incidents import STATES, list_incidents
    from steadycast.workspace import Workspace

    if state is not None and state not in STATES:
        raise UsageError(f"--state {state!r}: use one of {', '.join(STATES)}")
    ws = Workspace.open(workspace)
    found = list_incidents(ws.control_path, state=state, pipeline=pipeline)
    if json_out:
        _emit_json({"incidents": [i.as_dict() for i in found]})
        return
    if not found:
        out.print("No incidents" + (f" in state {state}." if state else "."))
        return
    table = Table(title="incidents")
    for col in ("id", "state", "severity", "pipeline", "title", "seen", "last seen"):
        table.add_column(col)
    for i in found:
        table.add_row(
            str(i.id),
            i.state,
            i.severity,
            i.pipeline,
            i.title,
            str(i.occurrences),
            i.last_seen[:19],
        )
    out.print(table)


def _incident_action(
    action: str, incident_id: int, note: str | None, workspace: Path | None, json_out: bool
) -> None:
    from steadycast.ops import incidents as inc
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    change = inc.acknowledge if action == "ack" else inc.resolve
    incident = change(ws.control_path, incident_id, note=note)
    if json_out:
        _emit_json(incident.as_dict())
    else:
        out.print(f"incident {incident.id} is {incident.state}: {incident.title}")


@app.command()
def ack(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    note: Annotated[str | None, typer.Option("--note", help="A note for the audit log.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Acknowledge an incident: someone is on it."""
    _incident_action("ack", incident_id, note, workspace, json_out)


@app.command()
def resolve(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    note: Annotated[str | None, typer.Option("--note", help="A note for the audit log.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Resolve an incident by hand (it reopens as a new one if the cause comes back)."""
    _incident_action("resolve", incident_id, note, workspace, json_out)


@app.command()
def status(
    pipeline: Annotated[str | None, typer.Argument(help="Only this pipeline.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Each pipeline at a glance: last run, gate, current release, open incidents, recent audit."""
    from steadycast.pipeline.status import pipeline_status
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    names = [pipeline] if pipeline else ws.pipeline_names()
    if pipeline:
        ws.pipeline(pipeline)
    doc = {"pipelines": [pipeline_status(ws, name) for name in names]}
    if json_out:
        _emit_json(doc)
        return
    for st in doc["pipelines"]:
        last = st["last_run"] or {}
        out.rule(f"[bold]{st['pipeline']}")
        out.print(
            f"  last run:        {last.get('run_id', '-')} {last.get('status', '')} {last.get('finished_at') or ''}"
        )
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
        if last.get("status") == "held":
            from steadycast.ops import advice

            out.print(
                f"  to publish it:   {advice.approve(ws.root, last['run_id'])}",
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


@app.command()
def synth(
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory for the fleet.")],
    series: Annotated[int, typer.Option("--series", help="Number of series.")] = 1000,
    days: Annotated[int, typer.Option("--days", help="Days of history.")] = 28,
    frequency: Annotated[str, typer.Option("--frequency", help="30min, 1h or 1D.")] = "1h",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    start: Annotated[str, typer.Option("--start", help="First day, YYYY-MM-DD.")] = "2024-01-01",
    timezone: Annotated[
        str, typer.Option("--timezone", help="Zone of the local timestamps.")
    ] = "UTC",
    rows_per_file: Annotated[int, typer.Option("--rows-per-file")] = 5_000_000,
    no_faults: Annotated[
        bool, typer.Option("--no-faults", help="Clean data, nothing planted.")
    ] = False,
    stuck_rate: Annotated[float | None, typer.Option("--stuck-rate")] = None,
    zeros_rate: Annotated[float | None, typer.Option("--zeros-rate")] = None,
    spike_rate: Annotated[float | None, typer.Option("--spike-rate")] = None,
    gap_rate: Annotated[float | None, typer.Option("--gap-rate")] = None,
    level_shift_rate: Annotated[float | None, typer.Option("--level-shift-rate")] = None,
    dst_rate: Annotated[float | None, typer.Option("--dst-rate")] = None,
    late_rate: Annotated[float | None, typer.Option("--late-rate")] = None,
    duplicate_rate: Annotated[float | None, typer.Option("--duplicate-rate")] = None,
    recent_days: Annotated[
        float | None, typer.Option("--recent-days", help="Plant faults in the last N days.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a fleet already there.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Generate a realistic synthetic fleet (Parquet), its pipeline and the ground truth of its faults."""
    import dataclasses

    from steadycast.synth import FaultRates, generate_fleet

    rates = FaultRates.none() if no_faults else FaultRates()
    given = {
        "stuck": stuck_rate,
        "zeros": zeros_rate,
        "spike": spike_rate,
        "gap": gap_rate,
        "level_shift": level_shift_rate,
        "dst": dst_rate,
        "late": late_rate,
        "duplicate": duplicate_rate,
        "recent_days": recent_days,
    }
    rates = dataclasses.replace(rates, **{k: v for k, v in given.items() if v is not None})
    with _progress(enabled=not json_out) as progress:
        summary = generate_fleet(
            output,
            series=series,
            days=days,
            frequency=frequency,
            seed=seed,
            faults=rates,
            start=start,
            timezone=timezone,
            rows_per_file=rows_per_file,
            overwrite=overwrite,
            progress=(lambda done, total: progress("synth", done, total)) if progress else None,
        )
    if json_out:
        _emit_json(summary.as_dict())
        return
    doc = summary.as_dict()
    out.print(f"wrote {doc.get('rows', 0):,} rows of {series:,} series to {output}", markup=False)
    out.print(f"  pipeline:     {output / 'pipeline.toml'}", markup=False)
    out.print(f"  ground truth: {output / 'ground_truth.parquet'}", markup=False)
    # The directory quoted, the file pattern not: the shell expands it.
    files = f"{shlex.quote(str(output / 'data'))}/*.parquet"
    out.print(
        f"  ingest with:  steadycast ingest NAME {files} (after copying pipeline.toml)",
        markup=False,
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    workspace: WorkspaceOpt = None,
) -> None:
    """The HTTP API (/api/v1, OpenAPI at /docs) and the dashboard (/)."""
    from steadycast.server import serve as run_server
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    err.print(
        f"serving {ws.root} on http://{host}:{port}/ (API under /api/v1, docs at /docs)",
        markup=False,
    )
    run_server(ws, host=host, port=port)


@app.command()
def monitor(
    pipeline: Annotated[str | None, typer.Argument(help="Only this pipeline.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Score published forecasts against actuals, check SLAs; open or resolve incidents.

    Schedule it every few minutes: a missed deadline means no run happened, so a run cannot be
    what notices it.
    """
    from datetime import UTC, datetime

    from steadycast.ops import accuracy, watch
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    names = [pipeline] if pipeline else ws.pipeline_names()
    now = datetime.now(UTC)
    tick = f"monitor-{now:%Y%m%dT%H%M%SZ}"
    doc = []
    for name in names:
        cfg = ws.pipeline(name)
        entry: dict[str, Any] = {"pipeline": name}
        if cfg.monitor.enabled:
            watched = watch.watch_accuracy(ws, cfg, tick)
            entry["accuracy"] = {
                **watched.as_dict(),
                "trend": accuracy.accuracy_trend(ws, name, limit=10),
            }
        entry["sla"] = watch.watch_sla(ws, cfg, tick, now).as_dict()
        doc.append(entry)
    if json_out:
        _emit_json({"pipelines": doc})
        return
    for entry in doc:
        out.rule(f"[bold]{entry['pipeline']}")
        out.print(f"  SLA: {entry['sla']['state']}: {entry['sla']['sentence']}", markup=False)
        acc = entry.get("accuracy") or {}
        if acc.get("judged_release"):
            out.print(
                f"  realised/promised accuracy of {acc['judged_release']}: {acc['ratio']:.2f}",
                markup=False,
            )
        for point in acc.get("trend", [])[-5:]:
            out.print(
                f"    {point.get('created_at', '')[:19]}  {point.get('metric')} {point.get(point.get('metric', 'mase'))}"
                f"  promised {point.get('promised')}",
                markup=False,
            )


@app.command()
def metrics(
    textfile: Annotated[
        Path | None,
        typer.Option("--textfile", help="Write for node-exporter's textfile collector (*.prom)."),
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Prometheus metrics of the workspace: on stdout, or as a textfile when no server runs."""
    from steadycast.ops.metrics import render_metrics, write_textfile
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    if textfile is None:
        sys.stdout.write(render_metrics(ws).decode())
    else:
        out.print(f"wrote {write_textfile(ws, textfile)}", markup=False)


@app.command()
def models(
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Built-in and plugged-in models with their capabilities; plugins that failed to load."""
    import warnings

    from steadycast.models.registry import describe_models, plugin_failures

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = describe_models()
        failures = plugin_failures()
    if json_out:
        _emit_json({"models": rows, "plugin_failures": [vars(f) for f in failures]})
        return
    table = Table(title="models")
    for col in (
        "name",
        "source",
        "tier",
        "intervals",
        "min history",
        "zeros",
        "intermittent",
        "global",
    ):
        table.add_column(col)
    yes = {True: "yes", False: "-"}
    for r in rows:
        source = r["source"] if not r["distribution"] else f"plugin ({r['distribution']})"
        table.add_row(
            r["name"],
            source,
            r["tier"],
            yes[r["intervals"]],
            str(r["min_history"]),
            yes[r["handles_zeros"]],
            yes[r["intermittent"]],
            yes[r["global"]],
        )
    out.print(table)
    for f in failures:
        err.print(
            f"plugin {f.name} ({f.distribution or f.entry_point}) not loaded: {f.error}",
            markup=False,
            highlight=False,
        )


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


def _disk_problem(exc: BaseException) -> str | None:
    """A full (or failing) disk, found anywhere in an exception's chain, as one message.

    Such an error is the machine's, not a bug of steadycast: it gets a clear line and exit code
    1, not a traceback. DuckDB, SQLite and the OS each say it their own way.
    """
    import errno
    import sqlite3

    duckdb = sys.modules.get("duckdb")
    fix = (
        "free some space on the workspace's disk and run the command again "
        "(what was committed before this error is kept)"
    )
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        first = text.strip().splitlines()[0] if text.strip() else type(current).__name__
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" writing {current.filename}" if current.filename else ""
            return f"no space left on device{where} ({current.strerror or text}); {fix}"
        full = "No space left on device" in text or "Disk quota exceeded" in text
        if duckdb is not None and isinstance(current, duckdb.IOException) and full:
            return f"no space left on device ({first}); {fix}"
        if duckdb is not None and isinstance(current, duckdb.OutOfMemoryException):
            # DuckDB spills to the workspace's .tmp/; with that disk full it runs out of memory.
            return (
                f"out of memory, and of disk space to spill to ({first}); {fix}, "
                "or raise [ingest] memory_limit"
            )
        if isinstance(current, sqlite3.OperationalError) and text in (
            "database or disk is full",
            "disk I/O error",
        ):
            return (
                f"the control database (control.sqlite) cannot be used: {text} (disk full?); {fix}"
            )
        current = current.__cause__ or current.__context__
    return None


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
        err.print("error: ", style="bold red", end="")
        err.print(str(exc), markup=False, highlight=False)
        return exc.exit_code
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception as exc:
        problem = _disk_problem(exc) or _internal_problem(exc)
        err.print("error: ", style="bold red", end="")
        err.print(problem, markup=False, highlight=False)
        return 1
    return 0


def _internal_problem(exc: Exception) -> str:
    """An unexpected error (a bug of steadycast, or of the machine) in one line, exit code 1.

    Its traceback is for the person debugging, not for a cron mail: printed above the line with
    ``--log-level DEBUG``, and kept in the run's record when it happened in a run.
    """
    import logging
    import traceback

    if logging.getLogger("steadycast").isEnabledFor(logging.DEBUG):
        traceback.print_exception(exc, file=sys.stderr)
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:300] + "…"
    where = "; ".join(" ".join(n.split()) for n in getattr(exc, "__notes__", []))
    return (
        f"internal error: {type(exc).__name__}{': ' + text if text else ''}"
        + (f" ({where})" if where else "")
        + "; run the command with --log-level DEBUG to print its traceback"
    )


if __name__ == "__main__":
    sys.exit(main())
