"""The workspace's own files checked: ``steadycast validate``, and the ``config`` incident.

A configuration file that does not load is a failure like any other: whichever command finds it
(``run``, ``monitor``, ``status``, the server, ``validate``) opens or updates one incident for
that file (fingerprint ``config:FILE``), alerted through the workspace's ``[alerts]`` channels,
and the next command that loads the file cleanly resolves it. A typo made at 5 p.m. reaches a
person before the 3 a.m. run finds it, not after.
"""

from __future__ import annotations

import logging
import tomllib
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steadycast.config import PIPELINE_NAME, AlertsConfig, load_pipeline
from steadycast.errors import ConfigError
from steadycast.ops import alerts, incidents
from steadycast.storage import control

if TYPE_CHECKING:
    from steadycast.config import PipelineConfig
    from steadycast.workspace import Workspace

__all__ = [
    "WORKSPACE_SCOPE",
    "Problem",
    "config_broken",
    "config_loaded",
    "problems_of",
    "validate_workspace",
]

log = logging.getLogger(__name__)

# The incidents' ``pipeline`` for steadycast.toml itself: not a pipeline name, so it can never
# be mistaken for one.
WORKSPACE_SCOPE = "(workspace)"
WORKSPACE_TABLES = frozenset({"workspace", "server", "alerts"})
WORKSPACE_KEYS = frozenset({"format"})


@dataclass(frozen=True)
class Problem:
    """One thing wrong in one file, as ``steadycast validate`` reports it."""

    file: str
    error: str

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "error": self.error}

    def __str__(self) -> str:
        return f"{self.file}: {self.error}"


def _fingerprint(file: str) -> str:
    return incidents.fingerprint("config", file)


def _channels(ws: Workspace) -> AlertsConfig:
    """The workspace's channels; none when steadycast.toml is the broken file."""
    try:
        return ws.alerts()
    except ConfigError:
        return AlertsConfig()


def config_broken(ws: Workspace, scope: str, file: str, error: str) -> None:
    """Open (or update) the incident of ``file``, which does not load, and alert.

    Never raises: the configuration error itself is what the command reports.
    """
    what = "the workspace settings" if scope == WORKSPACE_SCOPE else f"pipeline {scope!r}"
    try:
        incident, is_new = incidents.raise_incident(
            ws.control_path,
            _fingerprint(file),
            scope,
            "config",
            "error",
            f"{file} does not load: {what} cannot run",
            f"{error}\n(`steadycast validate` lists every problem of every file)",
            None,
        )
        changes = incidents.IncidentChanges()
        (changes.opened if is_new else changes.updated).append(incident)
        alerts.notify(_channels(ws), changes, ws.control_path, scope)
    except Exception as exc:  # the command's own error must still be reported
        log.warning("%s: could not record its incident: %s: %s", file, type(exc).__name__, exc)


def config_loaded(ws: Workspace, scope: str, file: str) -> None:
    """``file`` loads: resolve its live incident, if it has one, and alert. Never raises."""
    if not ws.control_path.exists():
        return
    try:
        with control.connect(ws.control_path) as con:
            rows = con.execute(
                "SELECT id FROM incidents WHERE fingerprint = ? AND state != 'resolved'",
                (_fingerprint(file),),
            ).fetchall()
        if not rows:
            return
        changes = incidents.IncidentChanges()
        for row in rows:
            changes.resolved.append(
                incidents.resolve(
                    ws.control_path, row["id"], note=f"cause gone: {file} loads again"
                )
            )
        alerts.notify(_channels(ws), changes, ws.control_path, scope)
    except Exception as exc:
        log.warning("%s: could not resolve its incident: %s: %s", file, type(exc).__name__, exc)


# ---------------------------------------------------------------------------------------------
# steadycast validate
# ---------------------------------------------------------------------------------------------


def problems_of(file: str, error: ConfigError | str) -> list[Problem]:
    """One problem per line of a configuration error, without the file name (or path) it
    starts with."""
    out = []
    for line in str(error).splitlines() or [str(error)]:
        at = line.find(f"{file}: ")
        if at == 0 or (at > 0 and line[at - 1] == "/" and " " not in line[:at]):
            line = line[at + len(file) + 2 :]
        out.append(Problem(file, line.strip()))
    return out


def _settings_problems(ws: Workspace) -> list[Problem]:
    """steadycast.toml: unknown tables and keys, ``[alerts]``, ``[server]``."""
    file = ws.settings_file.name
    try:
        doc = tomllib.loads(ws.settings_file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        return [Problem(file, f"not valid TOML ({exc})")]
    problems = [
        Problem(file, f"[{name}]: unknown table (known: {', '.join(sorted(WORKSPACE_TABLES))})")
        for name in sorted(set(doc) - WORKSPACE_TABLES)
    ]
    table = doc.get("workspace", {})
    if isinstance(table, dict):
        problems += [
            Problem(file, f"workspace.{key}: unknown key (known: format)")
            for key in sorted(set(table) - WORKSPACE_KEYS)
        ]
    try:
        ws.alerts()
    except ConfigError as exc:
        problems += problems_of(file, exc)
    from steadycast.server.settings import load_settings

    try:
        load_settings(ws)
    except ConfigError as exc:
        problems += problems_of(file, exc)
    return [Problem(file, p.error) for p in problems]


def _model_problems(file: str, cfg: PipelineConfig) -> list[Problem]:
    """Every model a pipeline names must exist (built in or plugged in)."""
    from steadycast.models.registry import ALIASES, available_models, plugin_failures

    with warnings.catch_warnings():
        # A plugin that does not load is a problem here only if this pipeline names it.
        warnings.simplefilter("ignore")
        known = available_models(cfg.models.plugins, cfg.models.disabled_plugins)
    names = [("models.candidates", n) for n in cfg.models.candidates]
    if cfg.models.tier != "full":
        names += [("models.fast_candidates", n) for n in cfg.models.fast_candidates]
    names += [("models.params", n) for n in cfg.models.params]
    problems = []
    for key, name in names:
        if ALIASES.get(name, name) in known:
            continue
        broken = [f.error for f in plugin_failures() if f.name == name]
        reason = (
            f"could not be loaded: {broken[0]}"
            if broken
            else "is not a known model; `steadycast models` lists them (known: "
            + ", ".join(sorted(known))
            + ")"
        )
        problems.append(Problem(file, f"{key}: model {name!r} {reason}"))
    return problems


def _pipeline_problems(ws: Workspace) -> list[Problem]:
    problems: list[Problem] = []
    for path in sorted(ws.pipelines_dir.glob("*.toml")):
        file = f"pipelines/{path.name}"
        if not PIPELINE_NAME.match(path.stem):
            problems.append(
                Problem(
                    file,
                    f"{path.stem!r} is not a pipeline name, so this file is ignored; rename it "
                    "using letters, digits, '_', '-', '.'",
                )
            )
            continue
        try:
            cfg = ws.pipeline(path.stem)
        except ConfigError as exc:
            # A broken steadycast.toml [alerts] breaks every pipeline without its own: it is
            # reported once, with steadycast.toml.
            own = [
                p
                for p in problems_of(file, exc)
                if not p.error.startswith(f"{ws.settings_file.name}: ")
            ]
            problems += own
            if own:
                continue
            cfg = load_pipeline(path, display=file)
        problems += _model_problems(file, cfg)
    return problems


def validate_workspace(ws: Workspace) -> list[Problem]:
    """Every problem in steadycast.toml and in each ``pipelines/*.toml``, in file order.

    Loading a pipeline file here records it like any command does: a broken file opens its
    incident, a fixed one resolves it.
    """
    return _settings_problems(ws) + _pipeline_problems(ws)


def as_json(problems: list[Problem]) -> dict[str, Any]:
    return {"ok": not problems, "problems": [p.as_dict() for p in problems]}
