"""Recorded resources are real: a model that burns 2 CPU-seconds per call is charged about that,
one that holds 500 MB shows it in peak memory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from steadycast.pipeline.run import run_pipeline
from steadycast.storage.runlog import get_run
from tests.integration.test_plugins_in_run import planted_workspace


@pytest.mark.parametrize("partitions", [1, 4])
def test_cpu_seconds_of_a_model_are_charged_to_it(tmp_path: Path, partitions: int) -> None:
    """One partition runs in the run process; four run in partition processes (the check
    stage's too), reaped at the end of the forecast stage."""
    model = "ChaosBurn"
    ws = planted_workspace(tmp_path, ["SeasonalNaive", model], series=4, timeout_s=60)
    pipeline = ws.pipelines_dir / "p.toml"
    pipeline.write_text(pipeline.read_text() + f"partition_size={4 // partitions}\n")
    result = run_pipeline(ws, "p")
    run = get_run(ws.control_path, result.run_id)
    assert run is not None
    usage = {m["model"]: m for m in run["models"]}
    burned = usage[model]
    expected = 2.0 * burned["tasks"]  # every call burns 2 CPU-seconds
    assert burned["failures"] == 0
    assert expected * 0.9 <= burned["cpu_s"] <= expected * 1.3
    # The stage's CPU time includes its workers', so it is at least what the model burned,
    # and each worker's CPU once: never more than the machine's cores give in the stage's time.
    forecast = next(s for s in run["stages"] if s["name"] == "forecast")
    assert forecast["cpu_s"] >= burned["cpu_s"]
    assert forecast["cpu_s"] <= forecast["wall_s"] * (os.cpu_count() or 1)


def test_peak_memory_of_a_model_shows_what_it_held(tmp_path: Path) -> None:
    ws = planted_workspace(tmp_path, ["SeasonalNaive", "ChaosAlloc"], series=2, timeout_s=60)
    result = run_pipeline(ws, "p")
    run = get_run(ws.control_path, result.run_id)
    assert run is not None
    usage = {m["model"]: m for m in run["models"]}
    # Both run in the same warm workers: the difference is what ChaosAlloc held.
    assert usage["ChaosAlloc"]["peak_rss_mb"] >= usage["SeasonalNaive"]["peak_rss_mb"] + 450
    forecast = next(s for s in run["stages"] if s["name"] == "forecast")
    assert forecast["peak_rss_mb"] >= usage["ChaosAlloc"]["peak_rss_mb"]
