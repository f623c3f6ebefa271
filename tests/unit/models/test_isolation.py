"""Isolation: every way model code can go wrong ends in a ModelError, on time, leaving nothing.

The chaos plugins (tests/plugins/chaos_models) are real installed entry points, so these tests
go through the same path as production: the registry loads them inside a worker process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import psutil
import pytest

from steadycast.errors import ModelError, ModelOutputError
from steadycast.models.isolation import IsolatedRunner, RemoteTraceback, run_model
from steadycast.models.validation import validate_forecast

from .series import HOURLY, batch, seasonal, series

TIMEOUT_S = 1.5
MEMORY_MB = 1024


@pytest.fixture(scope="module")
def runner() -> Iterator[IsolatedRunner]:
    with IsolatedRunner(workers=2, timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB) as pool:
        yield pool


@pytest.fixture
def history() -> pd.DataFrame:
    return batch(series("a", seasonal(72)), series("b", seasonal(72, level=5.0)))


def worker_processes(since: float = 0.0) -> list[psutil.Process]:
    """Live processes running the worker module that this test process is responsible for:
    its own workers, and anything forked from them that escaped to init. Workers of other
    steadycast processes on the machine are not ours to judge."""
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["cmdline", "status", "ppid", "create_time"]):
        info = proc.info
        if "steadycast.models._worker" not in (info["cmdline"] or []):
            continue
        if info["status"] == psutil.STATUS_ZOMBIE or info["create_time"] < since:
            continue
        if info["ppid"] in (me, 1) or _is_worker(info["ppid"]):
            found.append(proc)
    return found


def _is_worker(pid: int) -> bool:
    try:
        return "steadycast.models._worker" in psutil.Process(pid).cmdline()
    except psutil.Error:
        return False


def group_members(groups: list[int], exclude: set[int]) -> list[int]:
    """Live processes whose process group is one of ``groups``."""
    members = []
    for proc in psutil.process_iter(["status"]):
        if proc.pid in exclude or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if os.getpgid(proc.pid) in groups:
                members.append(proc.pid)
        except ProcessLookupError:
            continue
    return members


def assert_nothing_left_behind(runner: IsolatedRunner, old_groups: list[int]) -> None:
    """Only the runner's current workers remain: no stray worker process, nothing in the
    process group of a worker that was killed (SIGKILL is asynchronous, so allow 2 s)."""
    deadline = time.monotonic() + 2.0
    while True:
        current = set(runner.worker_pids())
        strays = [p.pid for p in worker_processes() if p.pid not in current]
        members = group_members(old_groups, exclude=current)
        if not strays and not members:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"left behind: worker processes {strays}, group members {members}")
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("ChaosHang", rf"model 'ChaosHang': timed out after {TIMEOUT_S:.1f} s"),
        ("ChaosSpin", rf"model 'ChaosSpin': timed out after {TIMEOUT_S:.1f} s"),
        ("ChaosFork", rf"model 'ChaosFork': timed out after {TIMEOUT_S:.1f} s"),
        ("ChaosEscape", rf"model 'ChaosEscape': timed out after {TIMEOUT_S:.1f} s"),
        ("ChaosHog", rf"model 'ChaosHog': exceeded memory limit of {MEMORY_MB} MB"),
        ("ChaosSegfault", r"model 'ChaosSegfault': killed by signal SIGSEGV \(File .*models.py"),
        ("ChaosExit", r"model 'ChaosExit': exited with code 3"),
        ("ChaosRaise", r"model 'ChaosRaise': raised ValueError: chaos: the matrix is singular"),
        ("ChaosNotAFrame", r"model 'ChaosNotAFrame': returned a list, not a pandas DataFrame"),
        (
            "ChaosBrokenImport",
            r"model 'ChaosBrokenImport': raised ConfigError: .*could not be loaded: .*ImportError",
        ),
        ("NoSuchModel", r"unknown model 'NoSuchModel'"),
    ],
)
def test_misbehaving_model_ends_in_model_error_on_time_leaving_nothing(
    runner: IsolatedRunner, history: pd.DataFrame, model: str, message: str
) -> None:
    runner.wait_ready()
    groups = runner.worker_pids()
    started = time.monotonic()
    with pytest.raises(ModelError, match=message):
        runner.run(model, {}, history, HOURLY)
    assert (
        time.monotonic() - started < TIMEOUT_S + 5.0
    )  # within its limit; latency figures: reliability suite
    assert_nothing_left_behind(runner, groups)


def test_a_model_exception_keeps_the_remote_traceback_as_cause(
    runner: IsolatedRunner, history: pd.DataFrame
) -> None:
    with pytest.raises(ModelError) as caught:
        runner.run("ChaosRaise", {}, history, HOURLY)
    assert isinstance(caught.value.__cause__, RemoteTraceback)
    assert 'steadycast_chaos_models/models.py", line' in str(caught.value.__cause__)


def test_a_frame_that_is_not_a_frame_is_an_output_error(
    runner: IsolatedRunner, history: pd.DataFrame
) -> None:
    with pytest.raises(ModelOutputError):
        runner.run("ChaosNotAFrame", {}, history, HOURLY)


def test_printing_megabytes_neither_blocks_nor_fails(
    runner: IsolatedRunner, history: pd.DataFrame
) -> None:
    runner.wait_ready()
    started = time.monotonic()
    out = runner.run("ChaosPrinter", {}, history, HOURLY)
    assert time.monotonic() - started < TIMEOUT_S + 5.0
    assert validate_forecast(out, history, HOURLY, "ChaosPrinter")[1] == {}


def test_a_forked_sleeper_in_its_own_session_is_ended_after_the_task(
    runner: IsolatedRunner, history: pd.DataFrame
) -> None:
    runner.wait_ready()
    out = runner.run("ChaosOrphan", {}, history, HOURLY)
    assert len(out) == 2 * HOURLY.horizon
    assert_nothing_left_behind(runner, runner.worker_pids())


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("ChaosNaN", r"non-finite yhat"),
        ("ChaosShort", r"returned 11 rows, expected 12"),
        ("ChaosWrongIds", r"missing from the output .* not in the history: 'a_x', 'b_x'"),
    ],
)
def test_bad_output_comes_back_and_fails_validation_for_every_series(
    runner: IsolatedRunner, history: pd.DataFrame, model: str, reason: str
) -> None:
    out = runner.run(model, {}, history, HOURLY)
    valid, failures = validate_forecast(out, history, HOURLY, model)
    assert valid.empty
    assert set(failures) == {"a", "b"}
    assert all(re.search(reason, r) for r in failures.values()), failures


def test_map_runs_in_parallel_keeps_order_and_survives_failures(
    runner: IsolatedRunner, history: pd.DataFrame
) -> None:
    runner.wait_ready()
    jobs = [
        ("SeasonalNaive", {}, history, HOURLY),
        ("ChaosHang", {}, history, HOURLY),
        ("Naive", {}, history, HOURLY),
        ("ChaosSegfault", {}, history, HOURLY),
        ("ChaosOracle", {}, history, HOURLY),
    ]
    started = time.monotonic()
    results = list(runner.map(jobs))
    # The hang holds one worker for the timeout while the other runs the rest: the map ends
    # (a generous bound, not a speed figure: kill latency is measured by the reliability suite).
    assert time.monotonic() - started < TIMEOUT_S + 30.0
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["DataFrame", "ModelError", "DataFrame", "ModelError", "DataFrame"]
    assert results[0]["yhat"].tolist() != results[2]["yhat"].tolist()  # order kept
    assert "timed out" in str(results[1]) and "SIGSEGV" in str(results[3])


def test_sys_exit_is_caught_and_the_worker_kept(
    runner: IsolatedRunner, history: pd.DataFrame
) -> None:
    runner.wait_ready()
    before = set(runner.worker_pids())
    with pytest.raises(ModelError, match=r"exited with code 3 \(sys.exit in model code\)"):
        runner.run("ChaosExit", {}, history, HOURLY)
    assert set(runner.worker_pids()) == before


def test_killed_workers_are_replaced_and_the_pool_keeps_working(
    runner: IsolatedRunner, history: pd.DataFrame
) -> None:
    runner.wait_ready()
    before = set(runner.worker_pids())
    with pytest.raises(ModelError, match="SIGSEGV"):
        runner.run("ChaosSegfault", {}, history, HOURLY)
    after = set(runner.worker_pids())
    assert len(after) == 2 and after != before
    out = runner.run("SeasonalNaive", {}, history, HOURLY)
    assert validate_forecast(out, history, HOURLY, "SeasonalNaive")[1] == {}


def test_usage_is_accounted_per_model_even_when_the_worker_is_killed() -> None:
    history = series("a", seasonal(72))
    with IsolatedRunner(workers=1, timeout_s=1.0, memory_mb=MEMORY_MB) as pool:
        with pytest.raises(ModelError):
            pool.run("ChaosSpin", {}, history, HOURLY)
        pool.run("SeasonalNaive", {}, history, HOURLY)
        usage = pool.usage()
        pids = pool.worker_pids()
    assert usage["ChaosSpin"].tasks == 1 and usage["ChaosSpin"].failures == 1
    assert usage["ChaosSpin"].cpu_s > 0.2  # it spun for a second, on a shared machine
    assert usage["SeasonalNaive"].tasks == 1 and usage["SeasonalNaive"].failures == 0
    assert 50 < usage["SeasonalNaive"].peak_rss_mb < MEMORY_MB + 600
    assert group_members(pids, exclude=set()) == []  # closing the pool ends its workers


def test_run_model_runs_once_in_a_fresh_worker_and_cleans_up() -> None:
    history = series("a", seasonal(72))
    before = {p.pid for p in worker_processes()}
    out = run_model("SeasonalNaive", {}, history, HOURLY, timeout_s=30, memory_mb=MEMORY_MB)
    valid, failures = validate_forecast(out, history, HOURLY, "SeasonalNaive")
    assert failures == {} and len(valid) == HOURLY.horizon
    np.testing.assert_allclose(valid["yhat"], history["y"].to_numpy()[-24:-12])
    assert {p.pid for p in worker_processes()} <= before


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        IsolatedRunner(workers=1, timeout_s=0, memory_mb=MEMORY_MB)
    with pytest.raises(ValueError, match="memory_mb must be at least 64"):
        IsolatedRunner(workers=1, timeout_s=1, memory_mb=10)


# A process that starts a runner, hands a worker a model that forks a child and waits for it
# (a model busy for minutes), prints the worker pids and then waits to be killed.
_DRIVER = """
import sys, threading
from steadycast.models.isolation import IsolatedRunner
from tests.unit.models.series import HOURLY, batch, seasonal, series
runner = IsolatedRunner(workers=1, timeout_s=600, memory_mb=1024)
runner.start()
runner.wait_ready()
print(*runner.worker_pids(), flush=True)
runner.run("ChaosFork", {}, batch(series("a", seasonal(72))), HOURLY)
"""


def test_workers_and_what_model_code_forked_die_with_the_process_that_started_them() -> None:
    """SIGKILL of the process driving a runner, mid-task: nothing of it computes on."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert driver.stdout is not None
        (worker,) = (int(p) for p in driver.stdout.readline().split())
        deadline = time.monotonic() + 60
        busy: list[psutil.Process] = []
        while not busy and time.monotonic() < deadline:  # the model's child is running
            busy = [
                p
                for p in psutil.Process(worker).children()
                if "steadycast.models._worker" in p.cmdline()
            ]
            time.sleep(0.05)
        assert busy, "the model never forked"
        everything = [psutil.Process(worker), *psutil.Process(worker).children(recursive=True)]
    finally:
        driver.kill()
        driver.wait()
        if driver.stdout is not None:
            driver.stdout.close()
    deadline = time.monotonic() + 1.0
    while True:
        alive = [p.pid for p in everything if _running(p)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not alive, f"alive 1 s after the driver was killed: {alive}"


def _running(proc: psutil.Process) -> bool:
    """Alive and not a zombie (a dead orphan waits for whoever adopted it to reap it)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
