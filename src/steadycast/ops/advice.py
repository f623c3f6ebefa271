"""Commands the product suggests to a person, written so that they work when pasted.

A suggested command names its workspace (``-w DIR``) unless the workspace is where the command
would look anyway (the current directory, with no ``$STEADYCAST_WORKSPACE`` pointing elsewhere),
and quotes every word a shell would split or expand (a reason with spaces, a path with spaces).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

#: The reason a printed ``approve`` suggests: it runs as printed, and says what to write there.
APPROVE_REASON = "why it is right to publish"


def _is_default_workspace(root: Path) -> bool:
    """True when ``steadycast`` run from here without ``-w`` would open ``root``."""
    try:
        here = Path(os.environ.get("STEADYCAST_WORKSPACE") or Path.cwd()).resolve()
    except OSError:  # the current directory is gone
        return False
    return here == root.resolve()


def command(root: Path | None, *args: str) -> str:
    """``steadycast ARGS`` as a shell line, with ``-w ROOT`` unless ROOT is the default."""
    words = ["steadycast", *args]
    if root is not None and not _is_default_workspace(root):
        words += ["-w", str(root)]
    return shlex.join(words)


def approve(root: Path | None, run_id: str, reason: str = APPROVE_REASON) -> str:
    """The approve command for a held run."""
    return command(root, "approve", run_id, "--reason", reason)


def rollback(root: Path | None, pipeline: str, reason: str) -> str:
    """The rollback command for a pipeline (to its previous release)."""
    return command(root, "rollback", pipeline, "--reason", reason)


def anywhere(root: Path, *args: str) -> str:
    """``steadycast ARGS -w ROOT``: for a message read away from the workspace (an alert), the
    workspace is always named."""
    return shlex.join(["steadycast", *args, "-w", str(root)])
