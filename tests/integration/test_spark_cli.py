"""``steadycast run NAME --engine spark`` as a user runs it: the installed command in a child
process, with no ``PYSPARK_PYTHON`` set. The workers get steadycast's interpreter, the release
equals the local engine's, and a worker that fails says why (its Python exception) on the
terminal and in the run's record. Also against a standalone cluster (a ``spark-class`` master
and worker on 127.0.0.1), as ``docs/spark.md`` shows.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from steadycast.engines.spark import _failure
from steadycast.storage.runlog import get_run
from steadycast.workspace import Workspace
from tests.conftest import shared_data
from tests.pipelines import pipeline_toml

pytestmark = pytest.mark.spark

COMPARED = ["yhat", "yhat_lo_80", "yhat_hi_80", "yhat_lo_95", "yhat_hi_95"]
PIPELINE = pipeline_toml(
    id_column="customer_id",
    time_column="reading_datetime",
    value_column="general_supply_kwh",
    frequency="30min",
    horizon=48,
    season_lengths=[48],
    models=["SeasonalNaive", "SES"],
)


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user who never heard of PYSPARK_PYTHON (loopback only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_")}
    return {**env, "SPARK_LOCAL_IP": "127.0.0.1", **extra}


def steadycast(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed ``steadycast`` command, in a child process."""
    script = Path(sys.executable).parent / "steadycast"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "steadycast.cli"]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env=env or user_env(),
        timeout=600,
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with the last 5 days of 6 SGSC households ingested; copied per run."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("the spark engine needs Java")
    pytest.importorskip("pyspark")
    root = tmp_path_factory.mktemp("spark_cli")
    frame = pd.read_csv(
        shared_data("sgsc_smart_meter_50", "sm_cust50.csv.gz"),
        usecols=["customer_id", "reading_datetime", "general_supply_kwh"],
        dtype={"customer_id": str},
    )
    frame = frame[frame["customer_id"].isin(sorted(frame["customer_id"].unique())[:6])]
    ts = pd.to_datetime(frame["reading_datetime"])
    last = ts.groupby(frame["customer_id"]).transform("max")
    frame[ts > last - pd.Timedelta(days=5)].to_csv(root / "sgsc.csv", index=False)
    ws = root / "ws"
    assert steadycast("init", str(ws)).returncode == 0
    (ws / "pipelines" / "sgsc.toml").write_text(PIPELINE)
    done = steadycast("ingest", "sgsc", str(root / "sgsc.csv"), "-w", str(ws))
    assert done.returncode == 0, done.stderr
    return ws


def run(ws: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, dict, str]:
    """``run sgsc --json``: exit code, the printed result, stderr."""
    done = steadycast("run", "sgsc", "-w", str(ws), "--json", *extra, env=env)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}, done.stderr


def release(ws: Path, tmp_path: Path, name: str) -> pd.DataFrame:
    out = tmp_path / f"{name}.csv"
    done = steadycast("forecast", "sgsc", "-w", str(ws), "--format", "csv", "-o", str(out))
    assert done.returncode == 0, done.stderr
    return pd.read_csv(out).sort_values(["unique_id", "ds"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def local_release(base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """The local engine's run of the same workspace: what every Spark run must equal."""
    ws = tmp_path_factory.mktemp("local") / "ws"
    shutil.copytree(base, ws)
    code, result, stderr = run(ws)
    assert code == 0, stderr
    return result, ws


def assert_same_release(local: tuple[dict, Path], result: dict, ws: Path, tmp_path: Path) -> None:
    expected, local_ws = local
    assert result["status"] == "published"
    assert (result["series"], result["fallback_series"]) == (
        expected["series"],
        expected["fallback_series"],
    )
    assert result["series"] == 6
    mine, theirs = release(local_ws, tmp_path, "local"), release(ws, tmp_path, "spark")
    assert list(mine.columns) == list(theirs.columns)
    assert mine[["unique_id", "ds", "model"]].equals(theirs[["unique_id", "ds", "model"]])
    compared = [c for c in COMPARED if c in mine]
    assert np.nanmax(np.abs(mine[compared].to_numpy() - theirs[compared].to_numpy())) <= 1e-9


def spark_detail(ws: Path, run_id: str) -> dict[str, Any]:
    """The Spark side of the run's forecast stage record: master, workers' Python."""
    record = get_run(Workspace.open(ws).control_path, run_id)
    assert record is not None
    stage = next(s for s in record["stages"] if s["name"] == "forecast")
    engine: dict[str, Any] = json.loads(stage["detail"])["engine"]
    return engine


def test_spark_from_the_cli_without_pyspark_python_publishes_the_local_release(
    base: Path, local_release: tuple[dict, Path], tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(base, ws)
    code, result, stderr = run(ws, "--engine", "spark", "--spark-master", "local[2]")
    assert code == 0, stderr[-3000:]
    assert_same_release(local_release, result, ws, tmp_path)
    forecast = next(s for s in result["stages"] if s["name"] == "forecast")
    assert forecast["rows_out"] == 6 * 48
    # The workers ran the interpreter of the steadycast command.
    engine = spark_detail(ws, result["run_id"])
    assert (engine["master"], engine["python"]) == ("local[2]", sys.executable)


@pytest.mark.slow  # a second Spark start from the CLI: 30 s alone, 100 s on a busy 2-core box
def test_a_failing_worker_names_its_python_exception_on_the_terminal_and_in_the_record(
    base: Path, tmp_path: Path
) -> None:
    # The user's own interpreter wins, even a wrong one: a bare environment without steadycast.
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    python = str(bare / "bin" / "python")
    ws = tmp_path / "ws"
    shutil.copytree(base, ws)
    env = user_env(PYSPARK_PYTHON=python)
    code, result, stderr = run(ws, "--engine", "spark", "--spark-master", "local[1]", env=env)
    assert code == 1, stderr[-3000:]
    assert result["status"] == "failed"
    error = result["error"]
    # The worker's exception and its interpreter, not Spark's frame around it.
    assert "ModuleNotFoundError: No module named" in error
    assert python in error and "PYSPARK_PYTHON" in error
    assert error.splitlines()[0] in stderr
    done = steadycast("runs", "sgsc", "-w", str(ws), "--json")
    record = next(r for r in json.loads(done.stdout)["runs"] if r["run_id"] == result["run_id"])
    assert (
        record["status"] == "failed" and "ModuleNotFoundError: No module named" in record["error"]
    )
    detail = (
        record["detail"] if isinstance(record["detail"], dict) else json.loads(record["detail"])
    )
    assert "Traceback" in detail["traceback"] and "ModuleNotFoundError" in detail["traceback"]


def test_the_worker_exception_is_read_from_the_end_of_the_python_traceback() -> None:
    text = (
        "An exception was thrown from the Python worker:\n"
        "Traceback (most recent call last):\n"
        '  File "worker.py", line 1, in main\n'
        "    raise KeyError(key)\n"
        "KeyError: 'x'\n\n"
        "During handling of the above exception, another exception occurred:\n\n"
        "Traceback (most recent call last):\n"
        '  File "worker.py", line 3, in main\n'
        "    raise ValueError(problem)\n"
        "pandas.errors.ValueError: bad value: ValueError: inner\n"
    )
    assert _failure(Exception(text)) == "pandas.errors.ValueError: bad value: ValueError: inner"
    assert _failure(Exception("An exception was thrown\nno traceback")) == (
        "An exception was thrown"
    )
    frame = (
        "Traceback (most recent call last):\n  x\nRuntimeError: steadycast: pipeline 'p', part=1: E"
    )
    assert _failure(Exception(frame)) == "pipeline 'p', part=1: E"


# -- a standalone cluster: a spark-class master and worker on 127.0.0.1 -------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"spark-class exited {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(
        f"nothing listens on 127.0.0.1:{port} after {deadline_s} s: {log.read_text()[-2000:]}"
    )


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[str]:
    """A master and one 2-core worker, started with pyspark's own ``bin/spark-class`` as the
    docs show; stopped (their process groups) when the test ends."""
    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    env = user_env(SPARK_LOG_DIR=str(tmp_path / "logs"), SPARK_WORKER_DIR=str(tmp_path / "work"))
    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    commands = {
        "master": [
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(free_port())),
        ],
        "worker": [
            "org.apache.spark.deploy.worker.Worker",
            url,
            *("--host", "127.0.0.1", "--cores", "2", "--memory", "2g"),
            *("--webui-port", str(free_port()), "--work-dir", str(tmp_path / "work")),
        ],
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, args in commands.items():
            log = tmp_path / f"{name}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [str(spark_class), *args],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            procs.append(proc)
            if name == "master":
                wait_for_port(port, proc, log, 60)
        time.sleep(3)  # the worker registers with the master
        yield url
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
                    proc.wait()


@pytest.mark.slow
def test_spark_from_the_cli_on_a_standalone_cluster_publishes_the_local_release(
    base: Path, local_release: tuple[dict, Path], standalone: str, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(base, ws)
    code, result, stderr = run(ws, "--engine", "spark", "--spark-master", standalone)
    assert code == 0, stderr[-3000:]
    assert_same_release(local_release, result, ws, tmp_path)
    engine = spark_detail(ws, result["run_id"])
    assert (engine["master"], engine["python"]) == (standalone, sys.executable)
