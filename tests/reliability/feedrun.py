"""Drive a pipeline on a real feed the way a user does, and judge what it serves afterwards.

Everything here goes through the product's public surface: the ``steadycast`` command in a child
process (``cli=True``) or the public Python API in-process (``steadycast.ingest``,
``steadycast.run_pipeline``, the export of the current release, the incident list). Nothing
depends on how the checks or the gate are built inside, so the same judgement holds whatever
names they use.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import steadycast
from steadycast.ops.incidents import list_incidents
from steadycast.storage.export import current_forecast
from steadycast.workspace import Workspace
from tests.conftest import run_cli
from tests.reliability.feeds import Feed, write_csv

PIPELINE = "feed"

# What an incident must say to name each fault (any of the words, in its kind, title or detail).
FAULT_WORDS = {
    "scale_x1000": r"scale|unit|ratio|level|x\s?1000|times",
    "scale_div1000": r"scale|unit|ratio|level|/\s?1000|times",
    "zeros": r"zero",
    "cumulative": r"cumulative|register|monoton|running",
    "stuck": r"stuck|flat|constant|repeat",
    "sign_flip": r"sign|negative",
    "time_shift": r"time.?zone|time.?shift|profile|phase|hour(?!ly)|offset|clock",
}


@dataclass
class Outcome:
    """What a run did with one delivery, as seen from outside."""

    status: str  # published | held | failed
    run_id: str
    served: pd.DataFrame  # the current release after the run: unique_id, ds (naive UTC), yhat
    incidents: list[dict[str, Any]]  # open incidents this run raised or saw again
    fresh: set[str] = field(default_factory=set)  # series forecast from this delivery's data
    carried: set[str] = field(default_factory=set)  # series kept on their previous forecast


class Driver:
    """One workspace with one pipeline fed from a :class:`Feed`."""

    def __init__(self, root: Path, feed: Feed, *, cli: bool = False) -> None:
        self.root = root
        self.feed = feed
        self.cli = cli
        self.deliveries = 0

    @classmethod
    def create(cls, root: Path, feed: Feed, extra: str = "", *, cli: bool = False) -> Driver:
        Workspace.init(root)
        (root / "pipelines" / f"{PIPELINE}.toml").write_text(
            feed.pipeline_toml(extra), encoding="utf-8"
        )
        return cls(root, feed, cli=cli)

    def copy(self, root: Path, *, cli: bool = False) -> Driver:
        """A copy of this workspace (its store, releases and incidents) to try one delivery on."""
        shutil.copytree(self.root, root)
        driver = Driver(root, self.feed, cli=cli)
        driver.deliveries = self.deliveries
        return driver

    def _cli(self, *args: str) -> Any:
        return run_cli(*args, "--workspace", str(self.root))

    def ingest(self, frame: pd.DataFrame, name: str = "") -> None:
        self.deliveries += 1
        path = self.root / f"delivery-{self.deliveries:03d}{'-' + name if name else ''}.csv"
        write_csv(frame, path)
        if self.cli:
            done = self._cli("ingest", PIPELINE, str(path))
            assert done.returncode == 0, done.stderr[-2000:]
        else:
            steadycast.ingest(Workspace.open(self.root), PIPELINE, [path])

    def served(self) -> pd.DataFrame:
        """The current release (empty when none): unique_id, ds as naive UTC, yhat."""
        if self.cli:
            done = self._cli("forecast", PIPELINE, "--format", "json")
            if done.returncode != 0:
                return pd.DataFrame(columns=["unique_id", "ds", "yhat"])
            rows = pd.DataFrame(json.loads(done.stdout)["rows"])
        else:
            try:
                _, rows = current_forecast(Workspace.open(self.root), PIPELINE)
            except steadycast.NotFoundError:
                return pd.DataFrame(columns=["unique_id", "ds", "yhat"])
        rows = rows[["unique_id", "ds", "yhat"]].copy()
        ds = pd.to_datetime(rows["ds"], utc=True)
        rows["ds"] = ds.dt.tz_convert("UTC").dt.tz_localize(None)
        rows["unique_id"] = rows["unique_id"].astype(str)
        return rows.reset_index(drop=True)

    def open_incidents(self) -> list[dict[str, Any]]:
        if self.cli:
            done = self._cli("incidents", "--json", "--state", "open", "--pipeline", PIPELINE)
            assert done.returncode == 0, done.stderr[-2000:]
            return list(json.loads(done.stdout)["incidents"])
        found = list_incidents(
            Workspace.open(self.root).control_path, state="open", pipeline=PIPELINE
        )
        return [i.as_dict() for i in found]

    def run(self, delivered: pd.DataFrame | None = None) -> Outcome:
        """Run the pipeline; ``delivered`` (the last delivery) tells which series got new data."""
        before = self.served()
        seen_before = {(i["id"], i["occurrences"]) for i in self.open_incidents()}
        if self.cli:
            done = self._cli("run", PIPELINE, "--json")
            assert done.returncode in (0, 3), (done.returncode, done.stderr[-3000:])
            result = json.loads(done.stdout)
            status, run_id = str(result["status"]), str(result["run_id"])
            assert (done.returncode == 3) == (status == "held"), (done.returncode, status)
        else:
            res = steadycast.run_pipeline(Workspace.open(self.root), PIPELINE)
            status, run_id = res.status, res.run_id
        after = self.served()
        incidents = [
            i
            for i in self.open_incidents()
            if i.get("run_id") == run_id or (i["id"], i["occurrences"]) not in seen_before
        ]
        outcome = Outcome(status=status, run_id=run_id, served=after, incidents=incidents)
        if delivered is not None and status == "published":
            outcome.fresh, outcome.carried = refreshed(before, after, delivered)
        return outcome


def refreshed(
    before: pd.DataFrame, after: pd.DataFrame, delivered: pd.DataFrame
) -> tuple[set[str], set[str]]:
    """(fresh, carried) among the series that got data: fresh ones start a new forecast."""
    got = set(delivered["unique_id"].astype(str))
    old_start = before.groupby("unique_id")["ds"].min()
    new_start = after.groupby("unique_id")["ds"].min()
    fresh, carried = set(), set()
    for uid in got:
        if uid not in new_start.index:
            carried.add(uid)  # left out of the release altogether
        elif uid in old_start.index and new_start[uid] <= old_start[uid]:
            carried.add(uid)
        else:
            fresh.add(uid)
    return fresh, carried


def utc(frame: pd.DataFrame, timezone: str) -> pd.DataFrame:
    """A feed frame with ``ds`` as naive UTC (local times that do not exist are dropped)."""
    if timezone == "UTC":
        return frame
    out = frame.copy()
    local = out["ds"].dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    out["ds"] = local.dt.tz_convert("UTC").dt.tz_localize(None)
    return out.dropna(subset=["ds"])


def _steps(ds: pd.Series, feed: Feed) -> np.ndarray:
    """Steps since a fixed origin (months for monthly data, else whole steps since a Monday)."""
    if feed.step >= pd.Timedelta("28D"):
        return np.asarray(ds.dt.year * 12 + ds.dt.month - 1)
    return np.asarray((ds - pd.Timestamp("2000-01-03")) // feed.step)


def _position(ds: pd.Series, feed: Feed) -> np.ndarray:
    season = feed.season_lengths[0] if feed.season_lengths else 1
    return _steps(ds, feed) % season


def garbage(
    served: pd.DataFrame, history: pd.DataFrame, feed: Feed, seasons: int = 4, factor: float = 2.0
) -> dict[str, str]:
    """Series whose served level (median yhat) is off their recent history by more than
    ``factor``: the history's level is the median over its last ``seasons`` main seasons (at
    least four weeks of days for daily data) at the season positions of the forecast."""
    history = utc(history, feed.timezone)
    season = feed.season_lengths[0] if feed.season_lengths else 1
    window = max(seasons * season, 28 if feed.step >= pd.Timedelta("1D") else 0, 8)
    bad = {}
    for uid, rows in served.groupby("unique_id"):
        past = history[history["unique_id"] == uid].sort_values("ds")
        if len(past):
            past = past[_steps(past["ds"], feed) > _steps(past["ds"], feed).max() - window]
        if past.empty:
            continue
        positions = set(_position(rows["ds"], feed))
        same = past[np.isin(_position(past["ds"], feed), list(positions))]
        level = float(np.median(same["y"] if len(same) else past["y"]))
        got = float(np.median(rows["yhat"]))
        if level == 0 and got == 0:
            continue
        low, high = sorted([abs(level), abs(got)])
        if (level > 0) != (got > 0) or low == 0 or high / low > factor:
            bad[str(uid)] = f"served level {got:.4g} against history {level:.4g}"
    return bad


def names(incidents: list[dict[str, Any]], fault: str, series: list[str] | None) -> list[str]:
    """What the incidents fail to name: the fault, and each given series (empty when all named)."""
    words = re.compile(FAULT_WORDS[fault], re.IGNORECASE)
    texts = [
        " ".join(str(i.get(k) or "") for k in ("kind", "fingerprint", "title", "detail"))
        for i in incidents
    ]
    about = [t for t in texts if words.search(t)]
    missing = [] if about else [f"fault {fault!r}"]
    for uid in series or []:
        if not any(re.search(rf"(?<![\w]){re.escape(uid)}(?![\w])", t) for t in about):
            missing.append(f"series {uid!r}")
    return missing
