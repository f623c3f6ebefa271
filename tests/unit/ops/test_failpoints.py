"""The one reader of ``STEADYCAST_FAILPOINT`` keeps both kinds of point the reliability tests
set: ``stage:NAME`` / ``raise:stage:NAME`` (exact value) and a comma-separated list of
``partition:...`` points that each fire once per run."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from steadycast.ops.failpoints import FAILPOINT_ENV, fail_at


def reach(code: str, value: str) -> int:
    """Run ``code`` (with ``failpoints`` imported) in a child with the variable set; its exit."""
    done = subprocess.run(
        [sys.executable, "-c", f"from steadycast.ops import failpoints\n{code}"],
        env={"PATH": "/usr/bin:/bin", FAILPOINT_ENV: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode


def test_a_raise_point_raises_there_and_nowhere_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAILPOINT_ENV, "raise:stage:check")
    fail_at("stage:forecast")  # another stage: nothing happens
    with pytest.raises(RuntimeError, match="fault injected at stage:check"):
        fail_at("stage:check")
    monkeypatch.delenv(FAILPOINT_ENV)
    fail_at("stage:check")  # unset: nothing happens


def test_a_stage_point_kills_the_process_only_at_that_stage() -> None:
    assert reach("failpoints.fail_at('stage:gate')", "stage:gate") == -signal.SIGKILL
    assert reach("failpoints.fail_at('stage:publish')", "stage:gate") == 0
    # A stage point is the whole value, not one of a list.
    assert reach("failpoints.fail_at('stage:gate')", "stage:gate,stage:publish") == 0


def test_a_partition_point_kills_once_per_run_whichever_process_reaches_it(
    tmp_path: Path,
) -> None:
    both = "partition:mid-write,partition:after-commit"
    markers = tmp_path / "parts" / "_staging"
    mid = (
        f"failpoints.kill_once('partition:mid-write', __import__('pathlib').Path({str(markers)!r}))"
    )
    after = mid.replace("mid-write", "after-commit")
    assert reach(mid, both) == -signal.SIGKILL
    assert reach(mid, both) == 0  # a retried attempt passes
    assert reach(after, both) == -signal.SIGKILL  # the other listed point fires on its own
    assert reach(after, both) == 0
    assert reach(mid, "partition:after-commit") == 0  # not listed: never fires
