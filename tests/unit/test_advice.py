"""Suggested commands work when pasted: quoted as a shell splits them, with the workspace named
unless a bare command would find it anyway."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from steadycast.ops import advice


def test_a_suggested_command_names_a_workspace_elsewhere_and_quotes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STEADYCAST_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "my workspace"
    root.mkdir()
    line = advice.approve(root, "p-1", "the drop is real: it's the tariff")
    assert shlex.split(line) == [
        "steadycast",
        "approve",
        "p-1",
        "--reason",
        "the drop is real: it's the tariff",
        "-w",
        str(root),
    ]


def test_the_workspace_is_left_out_only_where_a_bare_command_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.delenv("STEADYCAST_WORKSPACE", raising=False)
    assert advice.command(root, "status", "p") == "steadycast status p"
    # The environment wins over the current directory: then -w is needed after all.
    monkeypatch.setenv("STEADYCAST_WORKSPACE", str(tmp_path))
    assert shlex.split(advice.command(root, "status", "p"))[-2:] == ["-w", str(root)]
    monkeypatch.setenv("STEADYCAST_WORKSPACE", str(root))
    assert advice.command(root, "status", "p") == "steadycast status p"
