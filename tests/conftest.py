"""Shared fixtures: small real workspaces in tmp_path, real files, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from steadycast.models.registry import SteadycastPluginWarning, available_models, reload_plugins
from steadycast.workspace import Workspace
from tests.pipelines import pipeline_toml

if TYPE_CHECKING:
    from tests.observability_workspace import Observed

# Real servers on 127.0.0.1 (each started on first use, once per session), for every test folder.
pytest_plugins = ["tests.servers.s3", "tests.servers.postgres"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("STEADYCAST_DATA", REPO.parent / "shared" / "data"))


def pytest_configure(config: pytest.Config) -> None:
    """The tests load test-only model plugins that a user's environment never has: say where
    they are instead of failing every test."""
    import importlib.util

    if importlib.util.find_spec("steadycast_chaos_models") is None:
        raise pytest.UsageError(
            "the test plugins are not installed in this environment; run `make test`, or "
            "`.venv-test/bin/python -m pytest ...` once `make test` has made .venv-test"
        )


@pytest.fixture(autouse=True, scope="session")
def _plugins_loaded_once() -> None:
    """The test plugin package registers a plugin that fails on import, on purpose: its warning
    is expected once here (plugins load once per process), not leaked into other tests."""
    reload_plugins()
    with pytest.warns(SteadycastPluginWarning):
        available_models()


@pytest.fixture(scope="session")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    """A workspace with real published, held and failed runs (``tests.observability_workspace``),
    made once per session; a test that adds to it takes ``observed.copy(tmp_path)``."""
    from tests.observability_workspace import observed_workspace

    return observed_workspace(tmp_path_factory.mktemp("observed"))


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws")


@pytest.fixture
def make_pipeline(workspace: Workspace) -> Callable[..., str]:
    """Write pipelines/NAME.toml (``tests.pipelines.pipeline_toml``); returns the name."""

    def make(
        name: str = "meters",
        *,
        timezone: str = "UTC",
        time_format: str = "",
        frequency: str = "1h",
        horizon: int = 24,
        season_lengths: str = "[24]",
        extra: str = "",
        text: str | None = None,
    ) -> str:
        body = (
            text
            if text is not None
            else pipeline_toml(
                timezone=timezone,
                time_format=time_format,
                frequency=frequency,
                horizon=horizon,
                season_lengths=season_lengths,
                max_value=1000,
                extra=textwrap.dedent(extra),
            )
        )
        (workspace.pipelines_dir / f"{name}.toml").write_text(body, encoding="utf-8")
        return name

    return make


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``steadycast`` command in a child process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "steadycast.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=600,
    )


def shared_data(*parts: str) -> Path:
    """A file of the real datasets beside the repository; skips the test when absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real dataset not available: {path}")
    return path
