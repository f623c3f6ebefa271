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
        return
    for entry in doc:
        _print_watch(entry)


def _print_watch(entry: dict[str, Any]) -> None:
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
