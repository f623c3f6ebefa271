"""Small workspaces made the way a user makes them, for the report, metrics and hogs tests.

``observed_workspace`` ingests a small fleet and runs it through the public API
(``steadycast.ingest``, ``steadycast.run_pipeline``): a first published run; then a correction
that doubles the last day, so the total of the next forecasts jumps against the first release:
a run the gate holds for it, and a run where that rule is not blocking (it publishes, with the
rule failed); and a run of a pipeline with no data (failed). Its records are what the product writes, so the tests built on
it follow the product, not a copy of its schema. A series id carries quotes and HTML on purpose
(so every consumer is tested for escaping), one series is stuck for 30 hours (excluded by its
flat-line check) and one has a spike (an info finding). Built once per test session (three
small runs); tests that add to it work on a copy (``Observed.copy``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

import steadycast
from steadycast.workspace import Workspace
from tests.pipelines import CHEAP_MODELS, pipeline_toml

NASTY_ID = "m\"<b>bold</b>'&amp;"
SERIES = [NASTY_ID, *(f"m{i}" for i in range(1, 9))]
STUCK = "m3"  # 30 identical readings in a row: the flat-line check leaves it out
HORIZON = 12
START = pd.Timestamp("2024-03-01")
DAYS = 10
CHECKS = """\
[checks.flat_line]
max_steps = 24
policy = "exclude"
"""
PIPELINE = pipeline_toml(models=CHEAP_MODELS, forecast={"workers": 1})


def fleet_csv(
    path: Path, series: list[str], days: int = DAYS, seed: int = 0, *, planted: bool = False
) -> Path:
    """Hourly daily-seasonal series, plus two bad rows (negative, not a number) to quarantine.
    ``planted``: the stuck series and a spike in the first series, for the data checks."""
    rng = np.random.default_rng(seed)
    hours = pd.date_range(START, periods=24 * days, freq="1h")
    frames = []
    for i, uid in enumerate(series):
        daily = 1.0 + 0.5 * np.sin(2 * np.pi * (hours.hour.to_numpy() + i) / 24)
        values = np.maximum(0, daily * (1 + i) + rng.normal(0, 0.05, len(hours)))
        if planted and uid == STUCK:
            values[150:180] = values[150]
        if planted and i == 0:
            values[180] *= 40
        frames.append(
            pd.DataFrame(
                {"meter_id": uid, "timestamp": hours.strftime("%Y-%m-%d %H:%M"), "kwh": values}
            )
        )
    frame = pd.concat(frames, ignore_index=True).astype({"kwh": object})
    frame.loc[3, "kwh"] = -5.0
    frame.loc[7, "kwh"] = "n/a"
    frame.to_csv(path, index=False)
    return path


def last_day_doubled(fleet: Path, path: Path) -> Path:
    """A correction of ``fleet``: its last day of good rows, every value doubled."""
    frame = pd.read_csv(fleet)
    frame["kwh"] = pd.to_numeric(frame["kwh"], errors="coerce")
    frame = frame.dropna(subset=["kwh"])
    frame = frame[frame["kwh"] >= 0]
    last_day = pd.to_datetime(frame["timestamp"]) >= START + pd.Timedelta(days=DAYS - 1)
    frame = frame[last_day].assign(kwh=lambda f: f["kwh"] * 2)
    frame.to_csv(path, index=False)
    return path


@dataclass(frozen=True)
class Observed:
    """A workspace and the ids of the runs made in it (pipeline "meters" unless said)."""

    ws: Workspace
    first: str  # published, every gate rule passed
    published: str  # published with a non-blocking rule failed (total_jump)
    held: str  # held by the gate (total_jump), its forecasts kept
    failed: str  # pipeline "other", which has no data

    def copy(self, root: Path) -> Observed:
        """The same workspace under ``root``, for a test that adds to it."""
        shutil.copytree(self.ws.root, root / "ws")
        return replace(self, ws=Workspace.open(root / "ws"))


def _run(ws: Workspace, pipeline: str, expected: str) -> str:
    result = steadycast.run_pipeline(ws, pipeline)
    if result.status != expected:
        raise RuntimeError(f"the fixture run was {result.status}, not {expected}: {result.error}")
    return result.run_id


def observed_workspace(root: Path) -> Observed:
    """Ingest, then four real runs (two published, one held, one failed): see the module."""
    ws = Workspace.init(root / "ws")
    meters = ws.pipelines_dir / "meters.toml"
    meters.write_text(PIPELINE + "\n" + CHECKS)
    fleet = fleet_csv(root / "fleet.csv", SERIES, planted=True)
    steadycast.ingest(ws, "meters", [fleet])
    first = _run(ws, "meters", "published")
    steadycast.ingest(ws, "meters", [last_day_doubled(fleet, root / "correction.csv")])
    held = _run(ws, "meters", "held")
    meters.write_text(PIPELINE + "\n" + CHECKS + "\n[gate.total_jump]\nblocking = false\n")
    published = _run(ws, "meters", "published")
    (ws.pipelines_dir / "other.toml").write_text(PIPELINE)
    failed = _run(ws, "other", "failed")
    meters.write_text(PIPELINE + "\n" + CHECKS)
    return Observed(ws, first, published, held, failed)


def real_run_workspace(root: Path) -> tuple[Workspace, str]:
    """A workspace with one real, published run of a tiny, clean fleet (about 10 s)."""
    ws = Workspace.init(root / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE)
    steadycast.ingest(ws, "meters", [fleet_csv(root / "fleet.csv", [f"m{i}" for i in range(5)])])
    return ws, _run(ws, "meters", "published")
