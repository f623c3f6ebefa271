"""``steadycast run``, and the two levers a person pulls afterwards: ``approve`` and
``rollback``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from steadycast.cli._app import (
    JsonOpt,
    PipelineArg,
    WorkspaceOpt,
    emit_json,
    err,
    out,
    progress,
    say,
)


def run(
    pipelines: Annotated[
        list[str] | None,
        typer.Argument(
            help="Pipeline name; several names with --select.",
            metavar="PIPELINE",
            show_default=False,
        ),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Run every pipeline of the workspace, one after another.")
    ] = False,
    select: Annotated[
        bool,
        typer.Option(
            "--select",
            help="Run the pipelines named (--select NAME...), one after another, with one "
            "summary line each.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Run even when no data (and no setting) changed since the last published or "
            "held run; without it such a run is skipped: no new run, no new release.",
        ),
    ] = False,
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
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            hidden=True,
            help="Record the run under this id (the server names a run it starts before it "
            "starts, so its caller can poll it).",
        ),
    ] = None,
) -> None:
    """Check, prepare, backtest and select, forecast, gate and publish a pipeline (or, with
    --all / --select, several). Exit code 0: published, or skipped as nothing is new; 4:
    published (or skipped) but a sink does not hold the release (incident open, retried next
    run); 3: held (or still held: skipped on the data of a held run); 1: failed; 2:
    configuration error. With several, the worst of them."""
    from steadycast.workspace import Workspace

    names = list(pipelines or [])
    ws = Workspace.open(workspace)
    if not every and not select and len(names) == 1:
        _run_one(ws, names[0], force, json_out, engine, spark_master, run_id)
    else:
        _run_several(ws, names, every, force, json_out, engine, spark_master)


def _run_with_progress(
    ws: Any,
    name: str,
    force: bool,
    json_out: bool,
    engine: str | None,
    spark_master: str | None,
    run_id: str | None = None,
) -> Any:
    """One run of pipeline ``name``, with a progress bar unless JSON is asked for; a run with
    nothing new is skipped unless ``force``."""
    from steadycast.pipeline.run import run_pipeline

    with progress(enabled=not json_out) as update:
        return run_pipeline(
            ws,
            name,
            progress=update,
            engine=engine,
            spark_master=spark_master,
            skip_unchanged=not force,
            run_id=run_id,
        )


def _run_one(
    ws: Any,
    name: str,
    force: bool,
    json_out: bool,
    engine: str | None,
    spark_master: str | None,
    run_id: str | None = None,
) -> None:
    """``run NAME``: the run's stage table (or its JSON), and its exit code."""
    result = _run_with_progress(ws, name, force, json_out, engine, spark_master, run_id)
    if json_out:
        emit_json(result.as_dict())
    elif result.status == "skipped" and result.skipped is not None:
        say(f"{name}: skipped: {result.skipped['message']}")
    else:
        _print_run(result, ws.root)
    warn_sinks_behind(name, result.sinks)
    if result.status in ("published", "held", "skipped"):
        from steadycast.pipeline.many import result_exit_code

        code = result_exit_code(result)
        if code:
            raise typer.Exit(code)
        return
    if result.status != "published":
        # One line on stderr for whoever runs it from cron: what failed and why.
        err.print("error: ", style="bold red", end="")
        problem = " ".join(str(result.error).split())
        err.print(f"run {result.run_id} failed: {problem}", markup=False, highlight=False)
        raise typer.Exit(1)


def _run_several(
    ws: Any,
    names: list[str],
    every: bool,
    force: bool,
    json_out: bool,
    engine: str | None,
    spark_master: str | None,
) -> None:
    """``run --all`` / ``--select``: one line per pipeline as it ends, then the worst exit
    code and, on stderr, the pipelines that did not publish."""
    from steadycast.pipeline.many import exit_code, run_each, selected

    chosen = selected(ws, names, every)

    def one(name: str) -> Any:
        return _run_with_progress(ws, name, force, json_out, engine, spark_master)

    outcomes = []
    for outcome in run_each(chosen, one):
        outcomes.append(outcome)
        if not json_out:
            say(_summary(outcome))
        if outcome.result is not None:
            warn_sinks_behind(outcome.pipeline, outcome.result.sinks)
    if json_out:
        emit_json([o.as_dict() for o in outcomes])
    code = exit_code(outcomes)
    if code:
        bad = [f"{o.pipeline} ({o.status}, exit {o.exit_code})" for o in outcomes if o.exit_code]
        err.print("error: ", style="bold red", end="")
        err.print(
            f"{len(bad)} of {len(outcomes)} pipelines did not publish: {', '.join(bad)}",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(code)


def warn_sinks_behind(pipeline: str, sinks: list[dict[str, Any]]) -> None:
    """One line on stderr per sink that does not hold the current release: the release is
    published and served, the sink's incident is open, and the next run delivers again."""
    for s in sinks:
        if s.get("state") != "pending":
            continue
        # A sink added since the last delivery has no incident: nothing failed yet.
        incident = f"incident {s['incident_id']}; " if s.get("incident_id") else ""
        release = s["current_release_id"]
        rewrite = s.get("release_id") == release  # a forced rewrite failed; the sink has it
        what = (
            f"could not write release {release} again (it still holds it)"
            if rewrite
            else f"does not hold release {release}"
        )
        retry = f"steadycast sinks retry {pipeline}" + (" --force" if rewrite else "")
        err.print("warning: ", style="bold yellow", end="")
        err.print(
            f"{pipeline}: sink {s['sink']} {what} ({s['error']}); {incident}retry with "
            f"`{retry}`" + ("" if rewrite else " or on the next run"),
            markup=False,
            highlight=False,
        )


def _summary(outcome: Any) -> str:
    """One line for one pipeline of several."""
    took = f"{outcome.wall_s:.1f} s"
    result = outcome.result
    if result is None:
        return f"{outcome.pipeline}: failed before its run started ({took}): {outcome.error}"
    head = f"{outcome.pipeline}: {result.status}"
    if result.status == "skipped" and result.skipped is not None:
        return f"{head}: {result.skipped['message']}"
    if result.status == "published":
        return (
            f"{head}: run {result.run_id}, release {result.release_id}, {result.series:,} "
            f"series ({result.fallback_series:,} on a fallback), {took}"
        )
    problem = " ".join(str(result.error).split())
    return f"{head}: run {result.run_id} ({took}): {problem}"


def _print_run(result: Any, root: Path) -> None:
    from rich.table import Table

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


def approve(
    run_id: Annotated[str, typer.Argument(help="The held run to publish.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; goes to the audit log.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Publish a held run (the manual override). A run its data checks stopped before
    forecasting is continued past the stop from its own snapshot, then published."""
    from steadycast.pipeline.levers import approval_outcome
    from steadycast.pipeline.levers import approve as do_approve
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    release_id = do_approve(ws, run_id, reason)
    outcome = approval_outcome(ws, run_id)
    overridden = outcome["overridden_checks"]
    if json_out:
        doc: dict[str, Any] = {"run_id": run_id, "release_id": release_id}
        if overridden:
            doc["overridden_checks"] = overridden
        emit_json(doc)
        _exit_if_sinks_behind(ws, _pipeline_of(ws, run_id))
        return
    out.print(f"run {run_id} approved: release {release_id} is current", markup=False)
    if overridden:
        out.print(
            f"  continued past its data checks ({', '.join(overridden)}) from its own snapshot: "
            f"{outcome['series']:,} series forecast",
            markup=False,
            highlight=False,
        )
        for g in outcome["gate_failed"]:
            out.print(
                f"  output gate (recorded, not holding) {g['check']}: {g['detail']}",
                markup=False,
                highlight=False,
            )
    _exit_if_sinks_behind(ws, _pipeline_of(ws, run_id))


def _pipeline_of(ws: Any, run_id: str) -> str:
    from steadycast.storage.runlog import get_run

    return str((get_run(ws.control_path, run_id) or {})["pipeline"])


def rollback(
    pipeline: PipelineArg,
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
        emit_json({"pipeline": pipeline, "current": release_id})
    else:
        out.print(f"{pipeline}: release {release_id} is current again")
    _exit_if_sinks_behind(ws, pipeline)


def _exit_if_sinks_behind(ws: Any, pipeline: str) -> None:
    """After a lever made a release current: a warning per sink that did not take it, and exit
    4 (``many.SINK_BEHIND``), as ``run`` does."""
    from steadycast.pipeline.many import SINK_BEHIND
    from steadycast.sinks.deliver import sink_states

    found = [d.as_dict() for d in sink_states(ws, ws.pipeline(pipeline))]
    warn_sinks_behind(pipeline, found)
    if any(s["state"] == "pending" for s in found):
        raise typer.Exit(SINK_BEHIND)
