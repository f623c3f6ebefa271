"""No false alarms on clean real data: every real dataset replayed as deliveries holds no run.

Each dataset starts from a stretch of history, is published, then receives its next stretches
one delivery at a time (weekly for hourly and half-hourly data, four-weekly for daily ridership,
yearly for the monthly macro panel, 13 weeks for M4 Weekly), with a run after each. The
stretches include the hard real periods: GEFCom's holidays and zone 10's jump of 2008-01-02,
SGSC households over Christmas and New Year, CTA ridership through March 2020, FRED-MD through
2008 and 2020. Asserted: no run is held or fails. Reported per delivery: how many series were
excluded (kept on their previous forecast although they had new data).

Quick (``make test``): one or two deliveries per dataset, in its hard period, with the fault
suite's narrowed model candidates.
Long (``make reliability``): more deliveries, all series of each dataset, the default models.
``STEADYCAST_SWEEP_DELIVERIES=N`` caps the deliveries per dataset. Both use the default checks
and gate; plugins are not loaded (the test environment installs deliberately broken ones).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.reliability.conftest import LONG, Record
from tests.reliability.feedrun import Driver
from tests.reliability.feeds import Feed, cta, fred_md, gefcom, m4_daily, m4_weekly, sgsc

QUICK_MODELS = '[models]\ncandidates = ["SeasonalNaive", "SES"]\nplugins = false\n'
DEFAULT_MODELS = "[models]\nplugins = false\n"


@dataclass(frozen=True)
class Replay:
    """A dataset replayed: history before ``start``, then ``deliveries`` of the sweep length."""

    feed: Callable[[], Feed]
    start: str
    history_steps: int
    deliveries: int


QUICK = {
    "gefcom": Replay(gefcom, "2007-12-24", 8 * 168, 1),  # Christmas week
    "sgsc": Replay(sgsc, "2012-12-24", 8 * 336, 1),  # Christmas week
    "cta": Replay(cta, "2020-02-17", 2 * 365, 2),  # to mid-April 2020
    "fred_md": Replay(fred_md, "2020-01-01", 240, 1),  # 2020
    "m4_weekly": Replay(
        lambda: m4_weekly(20), str(pd.Timestamp("2018-12-30") - pd.Timedelta(weeks=12)), 0, 1
    ),
    "m4_daily": Replay(lambda: m4_daily(50), "2018-01-11", 10, 1),
}
LONG_SWEEP = {
    "gefcom": Replay(lambda: gefcom(range(1, 21)), "2007-12-03", 8 * 168, 12),
    "sgsc": Replay(lambda: sgsc(None), "2012-12-03", 8 * 336, 9),
    "cta": Replay(cta, "2019-11-04", 2 * 365, 14),
    "fred_md": Replay(fred_md, "2006-01-01", 360, 17),  # 2006 ... 2022
    "m4_weekly": Replay(
        lambda: m4_weekly(120), str(pd.Timestamp("2018-12-30") - pd.Timedelta(weeks=38)), 0, 3
    ),
    "m4_daily": Replay(lambda: m4_daily(1000), "2018-01-11", 10, 1),
}
SWEEP = LONG_SWEEP if LONG else QUICK


# A run with the default models takes minutes on the larger fleets (GEFCom's 20 zones, 50
# households, 120 weekly series; up to 7 minutes a run on 2 cores): the long sweep gets hours.
@pytest.mark.timeout(4 * 3600 if LONG else 600)
@pytest.mark.parametrize("dataset", list(SWEEP))
def test_clean_deliveries_are_never_held(dataset: str, tmp_path: Path, figure: Record) -> None:
    replay = SWEEP[dataset]
    if os.environ.get("STEADYCAST_SWEEP_DELIVERIES"):  # fewer, to measure a part of the long run
        cap = int(os.environ["STEADYCAST_SWEEP_DELIVERIES"])
        replay = dataclasses.replace(replay, deliveries=min(cap, replay.deliveries))
    feed = replay.feed()
    start = pd.Timestamp(replay.start)
    if replay.history_steps:
        history = feed.between(start - replay.history_steps * feed.offset, start)
    else:
        history = feed.between(pd.Timestamp.min, start)  # M4: all the series has before
    driver = Driver.create(tmp_path / "ws", feed, DEFAULT_MODELS if LONG else QUICK_MODELS)
    driver.ingest(history, "history")
    first = driver.run()
    held, failed, excluded = [], [], []
    if first.status != "published":
        (held if first.status == "held" else failed).append(f"history to {start:%Y-%m-%d}")
    for n in range(replay.deliveries):
        begin = start + n * feed.sweep_steps * feed.offset
        delivery = feed.between(begin, begin + feed.sweep_steps * feed.offset)
        if delivery.empty:
            continue
        driver.ingest(delivery, f"{begin:%Y%m%d}")
        outcome = driver.run(delivery)
        label = f"{begin:%Y-%m-%d}"
        if outcome.status == "held":
            why = [i["title"] for i in outcome.incidents if i.get("kind") != "held"]
            held.append(f"{label}: {'; '.join(why[:5])}")
        elif outcome.status != "published":
            failed.append(label)
        excluded.append(len(outcome.carried))
    figure(
        "clean-sweep",
        violations=len(held) + len(failed),
        value=(
            f"{dataset}: {replay.deliveries} deliveries, {len(held)} held, {len(failed)} failed, "
            f"excluded per delivery {excluded}"
        ),
        dataset=dataset,
        series=len(feed.series),
        deliveries=replay.deliveries,
        held=held,
        failed=failed,
        excluded=excluded,
        models="default" if LONG else "SeasonalNaive, SES",
    )
    assert not held, f"clean {dataset} deliveries held: {held}"
    assert not failed, f"clean {dataset} runs failed: {failed}"
