"""What an unauthenticated reader may see: the product's records, not the machine's.

Run records carry the pid and host of the process that made them (for the stale-lock check and
``steadycast runs`` on the machine); audit and incident records name OS users; messages can
quote the workspace's path. None of that is for a reader without the token: ``PublicView``
drops the machine keys, replaces the workspace path, the home directory and the host name in
every string, and names a local OS user only as ``LOCAL_ACTOR``. Actors of the API
(``api:<token_name>``) and of the platform itself are shown as they are.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

__all__ = ["INTERNAL_KEYS", "LOCAL_ACTOR", "PublicView"]

# Keys that describe the machine or the process, never the forecasts.
INTERNAL_KEYS = frozenset(
    {"pid", "host", "hostname", "user", "username", "cwd", "env", "environ", "argv", "executable"}
)
ACTOR_KEYS = frozenset({"actor", "acknowledged_by", "resolved_by", "approved_by"})
LOCAL_ACTOR = "local user"
WORKSPACE = "<workspace>"


def _path_pattern(path: Path) -> re.Pattern[str] | None:
    text = str(path)
    if len(text) <= 1:  # "/" itself: nothing to hide, and replacing it would mangle everything
        return None
    return re.compile(re.escape(text) + r"(?![\w.-])")


class PublicView:
    """Scrubs response data of one workspace for readers without the token."""

    def __init__(self, root: Path) -> None:
        patterns: list[tuple[re.Pattern[str], str]] = []
        roots = {root, root.resolve()}
        for r in sorted(roots, key=lambda p: -len(str(p))):
            found = _path_pattern(r)
            if found is not None:
                patterns.append((found, WORKSPACE))
        try:
            home = Path.home()
        except (KeyError, RuntimeError):
            home = None
        if home is not None and (found := _path_pattern(home)) is not None:
            patterns.append((found, "~"))
        host = socket.gethostname()
        if len(host) >= 2:
            short = host.split(".")[0]
            for name in dict.fromkeys([host, short]):
                if len(name) >= 2:
                    pat = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-])")
                    patterns.append((pat, "<host>"))
        self.patterns = patterns

    def text(self, value: str) -> str:
        for pattern, replacement in self.patterns:
            value = pattern.sub(replacement, value)
        return value

    @staticmethod
    def actor(value: Any) -> Any:
        """An actor as an open reader sees it: API and platform names, never an OS account."""
        if not isinstance(value, str) or value.startswith("api:") or value == "steadycast":
            return value
        return LOCAL_ACTOR

    def doc(self, value: dict[str, Any]) -> dict[str, Any]:
        """A response document (a JSON object) as an open reader may see it."""
        cleaned: dict[str, Any] = self(value)
        return cleaned

    def __call__(self, value: Any) -> Any:
        """``value`` (JSON-like) without machine keys, paths, host names or OS user names."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                k: (self.actor(v) if k in ACTOR_KEYS else self(v))
                for k, v in value.items()
                if k not in INTERNAL_KEYS
            }
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value
