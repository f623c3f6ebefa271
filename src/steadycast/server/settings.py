"""Server settings: the API token, its name, and whether reads need it too.

The token comes from ``STEADYCAST_API_TOKEN`` or from the file named by ``[server] token_file``
in ``steadycast.toml`` (relative to the workspace). A token file that its group or other users
can read or write (any bit of ``0o077``) is refused at start-up rather than used: a leaked
write token is a way to roll back production forecasts, and a writable one lets another user
choose it.
The token itself is never logged, echoed in an error, or put in the audit log; the audit log
names it ``api:<token_name>``.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field

from steadycast.errors import ConfigError
from steadycast.workspace import Workspace

TOKEN_ENV = "STEADYCAST_API_TOKEN"
DEFAULT_TOKEN_NAME = "api-token"
SERVER_KEYS = frozenset({"token_file", "token_name", "read_token_required"})
HOW_TO_CONFIGURE = (
    f"no API token is configured, so write requests are refused; set {TOKEN_ENV} or "
    "[server] token_file in steadycast.toml (a file readable by its owner only) and restart "
    "the server"
)


@dataclass(frozen=True)
class ServerSettings:
    """What the server needs from the workspace's ``[server]`` table and the environment."""

    token: str | None = field(default=None, repr=False)
    token_name: str = DEFAULT_TOKEN_NAME
    read_token_required: bool = False

    @property
    def actor(self) -> str:
        """Who the audit log names for a write made through the API."""
        return f"api:{self.token_name}"


def _server_table(ws: Workspace) -> dict[str, object]:
    try:
        doc = tomllib.loads(ws.settings_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{ws.settings_file}: not valid TOML ({exc})") from None
    table = doc.get("server", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{ws.settings_file}: [server] must be a table")
    return table


def _read_token_file(ws: Workspace, name: str) -> str:
    path = (ws.root / name).resolve()
    where = f"{ws.settings_file.name} [server] token_file = {name!r}"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{where}: the file {path} does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{where}: {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{where}: {path} has mode {mode:04o}, so other users of this machine can read or "
            f"change it; the API token file must be readable by its owner only "
            f"(run `chmod 600 {path}`)"
        )
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: {path} cannot be read ({type(exc).__name__})") from None
    if not token:
        raise ConfigError(f"{where}: {path} is empty")
    return token


def load_settings(ws: Workspace, token: str | None = None) -> ServerSettings:
    """Settings from ``steadycast.toml`` and the environment; an explicit ``token`` wins."""
    table = _server_table(ws)
    unknown = sorted(set(table) - SERVER_KEYS)
    if unknown:
        # A misspelt token_file would otherwise leave the server without its token.
        raise ConfigError(
            f"{ws.settings_file}: [server] {unknown[0]}: unknown key (known: "
            f"{', '.join(sorted(SERVER_KEYS))})"
        )
    token_name = table.get("token_name", DEFAULT_TOKEN_NAME)
    if not isinstance(token_name, str) or not token_name.strip():
        raise ConfigError(f"{ws.settings_file}: [server] token_name must be a non-empty string")
    read_required = table.get("read_token_required", False)
    if not isinstance(read_required, bool):
        raise ConfigError(f"{ws.settings_file}: [server] read_token_required must be true or false")
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    token_file = table.get("token_file")
    if token is None and token_file is not None:
        if not isinstance(token_file, str) or not token_file:
            raise ConfigError(f"{ws.settings_file}: [server] token_file must be a file name")
        token = _read_token_file(ws, token_file)
    if read_required and token is None:
        raise ConfigError(
            f"{ws.settings_file}: [server] read_token_required = true but no token is "
            f"configured; set {TOKEN_ENV} or [server] token_file"
        )
    return ServerSettings(token=token, token_name=token_name, read_token_required=read_required)
