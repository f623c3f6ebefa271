"""``steadycast sinks``: what each sink of a pipeline holds, and a retry that does not wait
for the next run (``sinks/deliver.py``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from steadycast.cli._app import JsonOpt, PipelineArg, WorkspaceOpt, emit_json, say

app = typer.Typer(
    name="sinks",
    help="Where each release is also written: what each sink holds, and a retry.",
    no_args_is_help=True,
)


@app.command("list")
def list_sinks(
    pipeline: PipelineArg,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Each sink of the pipeline and the release it holds; exit 4 when one is behind."""
    from steadycast.sinks.deliver import sink_states
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    found = [d.as_dict() for d in sink_states(ws, ws.pipeline(pipeline))]
    _show(pipeline, found, json_out)


@app.command("retry")
def retry(
    pipeline: PipelineArg,
    force: Annotated[
        bool,
        typer.Option("--force", help="Write every sink again, also those that hold the release."),
    ] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Deliver the current release to each sink that does not hold it (every sink with
    --force); a success resolves the sink's incident. Exit 4 when a sink is still behind."""
    from steadycast.sinks.deliver import deliver
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    found = [d.as_dict() for d in deliver(ws, ws.pipeline(pipeline), force=force)]
    _show(pipeline, found, json_out)


def _show(pipeline: str, found: list[dict[str, Any]], json_out: bool) -> None:
    """The sinks as JSON or one line each; exit 4 (``many.SINK_BEHIND``) when one is behind."""
    from steadycast.cli.run import warn_sinks_behind
    from steadycast.pipeline.many import SINK_BEHIND

    if json_out:
        emit_json({"pipeline": pipeline, "sinks": found})
    elif not found:
        say(f"{pipeline}: no sinks configured ([[sinks]] tables in pipelines/{pipeline}.toml)")
    for s in found:
        if json_out:
            continue
        if s["state"] == "pending":  # what it holds here; why, and the retry, on stderr
            holds = f"release {s['release_id']}" if s["release_id"] else "no release"
            current = s["current_release_id"]
            say(f"{pipeline}: sink {s['sink']}: holds {holds}, behind the current {current}")
            continue
        verb = "delivered" if s["state"] == "delivered" else "holds"
        if s["current_release_id"] is None:  # nothing published yet: nothing to hold
            say(f"{pipeline}: sink {s['sink']}: no release published yet")
            continue
        say(f"{pipeline}: sink {s['sink']}: {verb} release {s['release_id']} (current)")
    warn_sinks_behind(pipeline, found)
    if any(s["state"] == "pending" for s in found):
        raise typer.Exit(SINK_BEHIND)
