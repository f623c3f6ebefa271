"""The workspace: one directory holding the pipelines, the store, the control plane and releases.

DIR/steadycast.toml     workspace settings
DIR/pipelines/NAME.toml one file per pipeline
DIR/store.duckdb        observations, quarantine, batch ledger (see storage/store.py)
DIR/control.sqlite      runs, stages, incidents, audit log, locks (see storage/control.py)
DIR/releases/           immutable published forecasts and the current pointer
DIR/.tmp/               spill space for large ingests
"""

from __future__ import annotations

import os
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

from steadycast.config import (
    PIPELINE_NAME,
    AlertsConfig,
    PipelineConfig,
    has_own_alerts,
    load_pipeline,
    parse_alerts,
)
from steadycast.errors import ConfigError, UnknownPipelineError, WorkspaceError
from steadycast.storage import control, store

WORKSPACE_FILE = "steadycast.toml"
WORKSPACE_FORMAT = 1

WORKSPACE_TEMPLATE = """\
# steadycast workspace settings.
[workspace]
format = 1

[server]
# The write token of the HTTP API is read from STEADYCAST_API_TOKEN, or from this file
# (relative to the workspace), which must be readable by its owner only (chmod 600).
# token_file = "api-token"

# Where alerts go for every pipeline without an [alerts] table of its own, and for problems of
# the workspace itself (a pipeline file that does not load). Same keys as a pipeline's [alerts].
# [alerts]
# webhook_url = "https://hooks.example.com/..."
# command = ["/usr/local/bin/page-on-call"]
"""

EXAMPLE_PIPELINE = """\
# An example pipeline: half-hourly smart-meter readings, forecast one day ahead.
# Rename this file to pipelines/NAME.toml and edit it; NAME is the pipeline's name. Every
# file in pipelines/ is a pipeline (`steadycast run --all` runs each), so do not keep a copy.

[source]
id_column = "meter_id"        # column holding the series id
time_column = "timestamp"     # column holding the time
value_column = "kwh"          # column holding the value
timezone = "UTC"              # zone of naive timestamps (IANA name); aware ones are converted
time_format = ""              # optional strftime format, e.g. "%d/%m/%Y %H:%M"; inferred when empty

[series]
frequency = "30min"           # pandas offset alias: 30min, 1h, 1D, 1W ...
horizon = 48                  # steps to forecast
season_lengths = [48, 336]    # seasonal periods in steps (a day and a week of half hours)
min_value = 0                 # optional: values below are quarantined
# max_value = 1e9             # optional: values above are quarantined

# Everything below is optional; the values shown are the defaults.
# [ingest]
# snap_to_frequency = false   # true: 10:17 in an hourly series is stored as 10:00, not quarantined
#
# [models]
# candidates = [...]          # default: the pool of the frequency (docs/configuration.md)
# levels = [80, 95]           # prediction interval levels, in percent
#
# [backtest]
# windows = 3                 # rolling origins per series
# metric = "mase"             # mase, smape or rmsse
# combination = "mean"        # how the best 3 are combined: mean, median or trimmed
"""


@dataclass(frozen=True)
class Workspace:
    """A workspace directory; every path steadycast touches is derived from ``root``."""

    root: Path

    @property
    def settings_file(self) -> Path:
        return self.root / WORKSPACE_FILE

    @property
    def pipelines_dir(self) -> Path:
        return self.root / "pipelines"

    @property
    def store_path(self) -> Path:
        return self.root / store.STORE_FILE

    @property
    def control_path(self) -> Path:
        return self.root / control.CONTROL_FILE

    @property
    def releases_dir(self) -> Path:
        return self.root / "releases"

    @property
    def temp_dir(self) -> Path:
        return self.root / ".tmp"

    @classmethod
    def init(cls, root: Path) -> Workspace:
        """Create a workspace, or complete one that exists; never overwrites a user's files."""
        root = root.resolve()
        root.mkdir(parents=True, exist_ok=True)
        ws = cls(root)
        if not ws.settings_file.exists():
            ws.settings_file.write_text(WORKSPACE_TEMPLATE, encoding="utf-8")
        ws.pipelines_dir.mkdir(exist_ok=True)
        example = ws.pipelines_dir / "example.toml"
        if not any(ws.pipelines_dir.glob("*.toml")):
            example.write_text(EXAMPLE_PIPELINE, encoding="utf-8")
        ws.releases_dir.mkdir(exist_ok=True)
        with store.writing(ws.store_path):
            pass
        with control.connect(ws.control_path):
            pass
        control.audit(ws.control_path, "workspace.init", subject=str(root))
        return ws

    @classmethod
    def open(cls, root: Path | str | None = None) -> Workspace:
        """Open the workspace at ``root``, ``$STEADYCAST_WORKSPACE``, or the current directory."""
        if root is None:
            root = os.environ.get("STEADYCAST_WORKSPACE") or Path.cwd()
        path = Path(root).resolve()
        ws = cls(path)
        if not ws.settings_file.exists():
            raise WorkspaceError(
                f"{path}: not a steadycast workspace (no {WORKSPACE_FILE}); "
                f"create one with `{shlex.join(['steadycast', 'init', str(path)])}` "
                "or pass -w DIR"
            )
        try:
            settings = tomllib.loads(ws.settings_file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{ws.settings_file}: not valid TOML ({exc})") from None
        table = settings.get("workspace", {})
        fmt = table.get("format", WORKSPACE_FORMAT) if isinstance(table, dict) else None
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
            raise ConfigError(
                f"{ws.settings_file}: [workspace] format must be a whole number such as "
                f"{WORKSPACE_FORMAT} (got {fmt!r})"
            )
        if fmt > WORKSPACE_FORMAT:
            raise WorkspaceError(
                f"{ws.settings_file}: workspace.format {fmt!r} is newer than this steadycast "
                f"supports ({WORKSPACE_FORMAT}); upgrade steadycast"
            )
        return ws

    def pipeline_names(self) -> list[str]:
        return sorted(
            p.stem for p in self.pipelines_dir.glob("*.toml") if PIPELINE_NAME.match(p.stem)
        )

    def alerts(self) -> AlertsConfig:
        """The workspace's ``[alerts]`` table: the channels of every pipeline without its own,
        and of the workspace's own incidents (no channels when there is none)."""
        try:
            settings = tomllib.loads(self.settings_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return AlertsConfig()
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{WORKSPACE_FILE}: not valid TOML ({exc})") from None
        table = settings.get("alerts")
        return AlertsConfig() if table is None else parse_alerts(table, WORKSPACE_FILE)

    def pipeline(self, name: str) -> PipelineConfig:
        """Load ``pipelines/NAME.toml``, with the workspace's ``[alerts]`` unless it has its own.

        The name is checked before it becomes a path. A file that does not load opens (or
        updates) its ``config`` incident and alerts; one that loads again resolves it
        (steadycast.workspace_check).
        """
        from steadycast import workspace_check

        path = self._pipeline_path(name)
        display = f"pipelines/{name}.toml"
        try:
            cfg = load_pipeline(path, display=display)
        except ConfigError as exc:
            workspace_check.config_broken(self, name, display, str(exc))
            raise
        workspace_check.config_loaded(self, name, display)
        if has_own_alerts(cfg):
            return cfg
        try:
            alerts = self.alerts()
        except ConfigError as exc:
            workspace_check.config_broken(
                self, workspace_check.WORKSPACE_SCOPE, WORKSPACE_FILE, str(exc)
            )
            raise
        workspace_check.config_loaded(self, workspace_check.WORKSPACE_SCOPE, WORKSPACE_FILE)
        return cfg.model_copy(update={"alerts": alerts})

    def _pipeline_path(self, name: str) -> Path:
        if not PIPELINE_NAME.match(name):
            raise ConfigError(
                f"{name!r} is not a pipeline name; use letters, digits, '_', '-', '.'"
            )
        path = self.pipelines_dir / f"{name}.toml"
        if not path.exists():
            known = ", ".join(self.pipeline_names()) or "none yet"
            raise UnknownPipelineError(
                f"no pipeline {name!r} in {self.root} (expected pipelines/{name}.toml; "
                f"known: {known})"
            )
        return path
