"""``steadycast validate``: every problem in the workspace's configuration files, before a run
finds them (``steadycast.workspace_check``)."""

from __future__ import annotations

from pathlib import Path

from steadycast.cli._app import JsonOpt, WorkspaceOpt, emit_json, say


def validate(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Check steadycast.toml and every pipelines/*.toml (keys, values, models); exit 2 naming
    each problem, 0 when all is well."""
    from steadycast.errors import ConfigError
    from steadycast.workspace import WORKSPACE_FILE, Workspace
    from steadycast.workspace_check import as_json, problems_of, validate_workspace

    candidates: dict[str, dict[str, object]] = {}
    try:
        ws = Workspace.open(workspace)
    except ConfigError as exc:  # steadycast.toml itself does not load: that is the problem
        problems = problems_of(WORKSPACE_FILE, exc)
    else:
        problems = validate_workspace(ws)
        candidates = _candidates(ws.pipelines_dir)
    if json_out:
        emit_json({**as_json(problems), "candidates": candidates})
    else:
        for problem in problems:
            say(str(problem))
        for file, shown in candidates.items():
            say(f"{file}: models.candidates = {shown['models']} ({shown['origin']})")
        if not problems:
            say("ok: steadycast.toml and every pipeline file load")
    if problems:
        files = len({p.file for p in problems})
        raise ConfigError(f"{len(problems)} problem(s) in {files} configuration file(s)")


def _candidates(pipelines_dir: Path) -> dict[str, dict[str, object]]:
    """The models each loadable pipeline runs, and whether they are its frequency's default
    pool: a pipeline that names none should show what it gets."""
    from steadycast.config import candidates_origin, load_pipeline
    from steadycast.errors import ConfigError

    shown: dict[str, dict[str, object]] = {}
    for path in sorted(pipelines_dir.glob("*.toml")):
        file = f"pipelines/{path.name}"
        try:
            cfg = load_pipeline(path, display=file)
        except ConfigError:  # already reported as a problem
            continue
        shown[file] = {"models": list(cfg.models.candidates), "origin": candidates_origin(cfg)}
    return shown
