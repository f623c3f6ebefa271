"""SIGKILL an ingest at random moments; the re-run must leave every row stored exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from steadycast import store
from steadycast.workspace import Workspace

ROWS = 1_500_000
BAD_EVERY = 1000  # one row in a thousand has a non-numeric value


def big_csv(path: Path) -> Path:
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (
            SELECT 'm' || (i % 2000) AS meter_id,
                   strftime(TIMESTAMP '2024-01-01' + INTERVAL (i // 2000) HOUR, '%Y-%m-%d %H:%M') AS timestamp,
                   CASE WHEN i % {BAD_EVERY} = 7 THEN 'n/a' ELSE CAST(i % 97 AS VARCHAR) END AS kwh
            FROM range({ROWS}) t(i)
        ) TO '{path}' (HEADER)
        """
    )
    con.close()
    return path


def ingest_cmd(ws: Path, file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "steadycast.cli",
        "ingest",
        "meters",
        str(file),
        "-w",
        str(ws),
        "--json",
    ]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return big_csv(tmp_path_factory.mktemp("crash") / "big.csv")


def make_workspace(root: Path) -> Workspace:
    ws = Workspace.init(root)
    (ws.pipelines_dir / "meters.toml").write_text(
        '[source]\nid_column="meter_id"\ntime_column="timestamp"\nvalue_column="kwh"\n'
        '[series]\nfrequency="1h"\nhorizon=24\n'
    )
    return ws


@pytest.mark.parametrize("attempt", range(int(os.environ.get("STEADYCAST_CRASH_ATTEMPTS", "3"))))
def test_killed_ingest_reruns_to_exactly_once(
    tmp_path: Path, data_file: Path, attempt: int
) -> None:
    reference, ws = (make_workspace(tmp_path / name) for name in ("reference", "ws"))
    # A clean reference run measures how long an ingest takes, so kills land inside it.
    started = time.monotonic()
    subprocess.run(ingest_cmd(reference.root, data_file), check=True, capture_output=True)
    duration = time.monotonic() - started

    rng = random.Random(attempt)
    delay = rng.uniform(0.05, duration)
    proc = subprocess.Popen(
        ingest_cmd(ws.root, data_file), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()

    # Whatever the moment, the batch is fully in or not in at all.
    with store.reading(ws.store_path) as con:
        batches = con.execute("SELECT count(*) FROM batches").fetchone()
        stored = con.execute("SELECT count(*) FROM observations").fetchone()
    assert batches is not None and stored is not None
    assert (batches[0], stored[0]) in ((0, 0), (1, ROWS - ROWS // BAD_EVERY)), (
        f"killed after {delay:.2f}s"
    )

    rerun = subprocess.run(ingest_cmd(ws.root, data_file), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    with store.reading(ws.store_path) as con:
        assert con.execute("SELECT count(*) FROM batches").fetchone() == (1,)
        total, distinct = con.execute(
            "SELECT count(*), count(DISTINCT (unique_id, ds)) FROM observations"
        ).fetchone()  # type: ignore[misc]
        quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()
    assert total == distinct == ROWS - ROWS // BAD_EVERY
    assert quarantined == (ROWS // BAD_EVERY,)
