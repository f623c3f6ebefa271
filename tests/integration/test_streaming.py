"""Streaming: the run's per-series stages hold one partition of series at a time, so their memory
does not grow with the fleet (see docs/ARCHITECTURE.md). The resumption half of the promise
(a killed run restarts from its last finished partition) is tests/reliability/test_crash_run.py.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from steadycast.ingestion.batch import ingest
from steadycast.pipeline.run import run_pipeline
from steadycast.workspace import Workspace

CLI = [sys.executable, "-m", "steadycast.cli"]
PARTITION = 50


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class Sampler:
    """This process's RSS every 10 ms, marked with the forecast progress seen so far."""

    def __init__(self) -> None:
        self.samples: list[tuple[int, float]] = []
        self.done = 0
        self.marks: list[int] = []  # where each finished partition is in ``samples``
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.samples.append((self.done, rss_mb()))

    def progress(self, label: str, done: int, total: int) -> None:
        if label == "forecast":
            self.done = done
            self.marks.append(len(self.samples))
            self.samples.append((done, rss_mb()))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def growth_while_forecasting(self) -> float:
        """RSS growth from the first finished partition to the last."""
        window = [rss for _, rss in self.samples[self.marks[0] : self.marks[-1] + 1]]
        return max(window) - window[0]


def forecast_memory(root: Path, series: int) -> tuple[float, float, int, int]:
    """Run a fleet of ``series``; return the driver's RSS growth while forecasting (MB), the
    workers' peak (MB), the fleet's history as one frame (MB) and the partitions."""
    fleet = root / f"fleet{series}"
    synth = [*CLI, "synth", "--series", str(series), "--days", "28", "--frequency", "1h"]
    subprocess.run([*synth, "-o", str(fleet)], check=True, capture_output=True)
    ws = Workspace.init(root / f"ws{series}")
    pipeline = (fleet / "pipeline.toml").read_text()
    pipeline += (
        f'\n[models]\ntier = "fast"\n\n[forecast]\npartition_size = {PARTITION}\nworkers = 1\n'
    )
    (ws.pipelines_dir / "fleet.toml").write_text(pipeline)
    files = sorted((fleet / "data").glob("*.parquet"))
    ingest(ws, "fleet", files)
    with Sampler() as sampler:
        result = run_pipeline(ws, "fleet", progress=sampler.progress)
    assert result.series == series, result.error
    con = sqlite3.connect(ws.control_path)
    [(workers,)] = con.execute(
        "SELECT max(peak_rss_mb) FROM model_usage WHERE run_id = ?", [result.run_id]
    ).fetchall()
    con.close()
    history = pd.concat(pd.read_parquet(f) for f in files)
    return (
        sampler.growth_while_forecasting(),
        float(workers),
        history.memory_usage(deep=True).sum() / 2**20,
        sampler.done,
    )


@pytest.mark.slow
def test_forecast_memory_stays_flat_while_the_fleet_grows_tenfold(tmp_path: Path) -> None:
    small_growth, small_workers, _, small_parts = forecast_memory(tmp_path, 200)
    large_growth, large_workers, history_mb, large_parts = forecast_memory(tmp_path, 2000)
    assert (small_parts, large_parts) == (4, 40)
    # A stage that kept each partition's history would grow by the fleet's history (tens of
    # MB here); streaming grows by what a partition leaves behind (its forecasts) only.
    assert history_mb > 40, "the fleet is too small for the test to see a leak"
    assert large_growth < small_growth + 0.25 * history_mb, (small_growth, large_growth, history_mb)
    # The worker processes see one partition's series at a time whatever the fleet.
    assert large_workers < 1.2 * small_workers, (small_workers, large_workers)
