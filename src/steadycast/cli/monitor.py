"""``steadycast monitor``: one scheduled look at realised accuracy and SLAs
(``ops.watch``, the path the run records and notifies through too)."""

from __future__ import annotations

from typing import Any

from steadycast.cli._app import JsonOpt, OnlyPipelineArg, WorkspaceOpt, emit_json, out


def monitor(
    pipeline: OnlyPipelineArg = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Score published forecasts against actuals, check SLAs; open or resolve incidents.

    Schedule it every few minutes: a missed deadline means no run happened, so a run cannot be
    what notices it.
    """
    from datetime import UTC, datetime

    from steadycast.ops.watch import watch_pipelines
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    doc = watch_pipelines(ws, pipeline, datetime.now(UTC))
    if json_out:
        emit_json({"pipelines": doc})
    else:
        for entry in doc:
            _print_watch(entry)
    broken = [entry["pipeline"] for entry in doc if entry.get("error")]
    if broken:
        from steadycast.errors import ConfigError
        from steadycast.ops import advice

        # After the others were watched: one broken file must not silence every pipeline.
        raise ConfigError(
            f"{len(broken)} pipeline file(s) do not load ({', '.join(broken)}); their incidents "
            f"are open; `{advice.command(ws.root, 'validate')}` lists every problem"
        )


def _print_watch(entry: dict[str, Any]) -> None:
    out.rule(f"[bold]{entry['pipeline']}")
    if entry.get("error"):
        for number, line in enumerate(str(entry["error"]).splitlines()):
            out.print(("  broken: " if number == 0 else "          ") + line, markup=False)
        return
    out.print(f"  SLA: {entry['sla']['state']}: {entry['sla']['sentence']}", markup=False)
    acc = entry.get("accuracy") or {}
    if acc.get("judged_release"):
        out.print(
            f"  realised/promised accuracy of {acc['judged_release']}: {acc['ratio']:.2f}",
            markup=False,
        )
    for point in acc.get("trend", [])[-5:]:
        metric = point.get("metric", "mase")
        out.print(
            f"    {(point.get('created_at') or '')[:19]}  {metric} {_figure(point.get(metric))}"
            f"  promised {_figure(point.get('promised'))}  ratio {_figure(point.get('ratio'))}",
            markup=False,
        )


def _figure(value: Any) -> str:
    """A score as a person reads it (2 decimals); JSON keeps the full value."""
    return "-" if value is None else f"{value:.2f}"
