"""``steadycast models``: the built-in and plugged-in models, and plugins that failed to load."""

from __future__ import annotations

from typing import Any

from steadycast.cli._app import JsonOpt, WorkspaceOpt, emit_json, err, out

_COLUMNS = ("name", "source", "tier", "intervals", "min history", "zeros", "intermittent", "global")


def models(
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Built-in and plugged-in models with their capabilities; plugins that failed to load."""
    import warnings

    from steadycast.models.registry import describe_models, plugin_failures

    # A plugin that fails to load warns; here it is listed below the table instead.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = describe_models()
        failures = plugin_failures()
    if json_out:
        emit_json({"models": rows, "plugin_failures": [vars(f) for f in failures]})
        return
    _print_models(rows)
    for f in failures:
        err.print(
            f"plugin {f.name} ({f.distribution or f.entry_point}) not loaded: {f.error}",
            markup=False,
            highlight=False,
        )


def _print_models(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="models")
    for col in _COLUMNS:
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
