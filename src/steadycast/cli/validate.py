"""``steadycast validate``: every problem in the workspace's configuration files, before a run
finds them (``steadycast.workspace_check``)."""

from __future__ import annotations

from steadycast.cli._app import JsonOpt, WorkspaceOpt, emit_json, say


def validate(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Check steadycast.toml and every pipelines/*.toml (keys, values, models); exit 2 naming
    each problem, 0 when all is well."""
    from steadycast.errors import ConfigError
    from steadycast.workspace import WORKSPACE_FILE, Workspace
    from steadycast.workspace_check import as_json, problems_of, validate_workspace

    try:
        ws = Workspace.open(workspace)
    except ConfigError as exc:  # steadycast.toml itself does not load: that is the problem
        problems = problems_of(WORKSPACE_FILE, exc)
    else:
        problems = validate_workspace(ws)
    if json_out:
        emit_json(as_json(problems))
    else:
        for problem in problems:
            say(str(problem))
        if not problems:
            say("ok: steadycast.toml and every pipeline file load")
    if problems:
        files = len({p.file for p in problems})
        raise ConfigError(f"{len(problems)} problem(s) in {files} configuration file(s)")
