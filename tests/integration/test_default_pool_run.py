"""A pipeline that names no candidates runs its frequency's default pool end to end, and the run
records the pool it used."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from steadycast.forecasting.pools import POOLS
from tests.conftest import run_cli
from tests.pipelines import pipeline_toml


def _weekly_csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    weeks = pd.date_range("2019-01-06", periods=160, freq="W-SUN")
    rows = []
    for i in range(4):
        noise = rng.normal(0, 1, len(weeks)).cumsum()
        level = 100 + 10 * i + 5 * np.sin(2 * np.pi * np.arange(len(weeks)) / 52) + noise
        rows.append(
            pd.DataFrame(
                {"id": f"s{i}", "week": weeks.strftime("%Y-%m-%d"), "sales": np.maximum(level, 1)}
            )
        )
    pd.concat(rows).to_csv(path, index=False)
    return path


def test_a_weekly_pipeline_without_candidates_runs_and_records_the_weekly_pool(
    tmp_path: Path,
) -> None:
    ws = tmp_path / "ws"
    assert run_cli("init", str(ws)).returncode == 0
    for path in (ws / "pipelines").glob("*.toml"):
        path.unlink()
    text = pipeline_toml(
        id_column="id", time_column="week", value_column="sales", frequency="W-SUN", horizon=8,
        season_lengths=[52], forecast={"workers": 1},
    )  # fmt: skip
    (ws / "pipelines" / "weekly.toml").write_text(text, encoding="utf-8")
    csv = _weekly_csv(tmp_path / "weekly.csv")
    assert run_cli("ingest", "weekly", str(csv), "-w", str(ws)).returncode == 0
    env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "passive")}
    ran = run_cli("run", "weekly", "-w", str(ws), "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert run["status"] == "published"
    pool = list(POOLS["weekly"])
    assert run["config"]["models"]["candidates"] == pool
    exported = run_cli("forecast", "weekly", "-w", str(ws), "--format", "json")
    rows = json.loads(exported.stdout)["rows"]
    assert len(rows) == 4 * 8
    # The forecasts come from pool members (or ensembles of them), not the former default's.
    assert not [r["model"] for r in rows if "AutoTheta" in r["model"] or "LightGBM" in r["model"]]
