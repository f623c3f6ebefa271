"""Never publish garbage, on the faults real feeds have.

A pipeline on real data (GEFCom2012 load zones, SGSC smart meters, CTA ridership) is published
on clean history with the default checks and gate; then its next delivery arrives broken the way
real feeds break (``feeds.FAULTS``: x1000, /1000, all zeros, a cumulative register, a stuck
value, flipped signs, timestamps shifted by whole hours), in the whole fleet or in a few series.
For each, asserted from outside (command line, public API):

- the run is held (exit 3) or the faulty series are excluded (their served forecast is not
  made from the faulty data: it is the previous one, or they are left out);
- an open incident names the fault and, when only a few series are faulty, each of them;
- what is served afterwards contains no garbage: every series' served level (median yhat) is
  within a factor 2 of its recent history's level at the same season positions;
- the clean control delivery publishes, every series forecast from its new data.

The subject is the checks and the gate, not the models: the suite's pipelines narrow the model
candidates to SeasonalNaive and SES (cheap, still a real selection) and do not load plugins;
everything else is the default. The base workspace of each dataset is built and published once
and copied per case. The controls and one fault per scope (GEFCom) go through the real command
in a child process; the other cases use the public Python API in-process.

Quick (``make test``): every fault in both scopes on GEFCom (the issue's case) and one fault
per scope on SGSC and CTA, plus every control. Long (``make reliability``): every dataset x
fault x scope; each case records its outcome (held / excluded / missed) for the detection table
of docs/RELIABILITY.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.reliability.conftest import LONG, Record
from tests.reliability.feedrun import Driver, Outcome, garbage, names
from tests.reliability.feeds import FAULTS, Feed, applicable, cta, gefcom, sgsc

EXTRA = '[models]\ncandidates = ["SeasonalNaive", "SES"]\nplugins = false\n'


@dataclass(frozen=True)
class Setup:
    """Where a dataset's fault delivery starts, how much history precedes it, the few series."""

    feed: Callable[[], Feed]
    cut: str
    history_steps: int
    few: tuple[str, ...]
    sub_daily: bool  # whether a time-zone shift applies


SETUPS = {
    "gefcom": Setup(gefcom, "2008-05-01", 8 * 168, ("zone2", "zone5"), True),
    "sgsc": Setup(sgsc, "2012-12-03", 8 * 336, ("10006630", "10018244"), True),
    "cta": Setup(cta, "2019-05-06", 2 * 365, ("rail_boardings",), False),
}
QUICK_OTHERS = ("scale_x1000",)
CLI_CASES = {("gefcom", "scale_x1000", "fleet"), ("gefcom", "zeros", "few")}


def _cases() -> list[tuple[str, str, str]]:
    out = []
    for dataset, setup in SETUPS.items():
        for fault in FAULTS:
            if fault == "time_shift" and not setup.sub_daily:
                continue
            if not LONG and dataset != "gefcom" and fault not in QUICK_OTHERS:
                continue
            out += [(dataset, fault, "fleet"), (dataset, fault, "few")]
    return out


@dataclass
class Base:
    """A dataset's published workspace, its clean history and its next (clean) delivery."""

    driver: Driver
    history: pd.DataFrame
    delivery: pd.DataFrame


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Base]:
    built: dict[str, Base] = {}

    def base(dataset: str) -> Base:
        if dataset not in built:
            setup = SETUPS[dataset]
            feed = setup.feed()
            history, delivery = feed.split(setup.cut, setup.history_steps)
            driver = Driver.create(tmp_path_factory.mktemp(dataset) / "ws", feed, EXTRA)
            driver.ingest(history, "history")
            first = driver.run()
            assert first.status == "published", first
            built[dataset] = Base(driver, history, delivery)
        return built[dataset]

    return base


def _judge(outcome: Outcome, faulty: list[str]) -> str:
    """held, excluded (every faulty series kept on its previous forecast) or missed."""
    if outcome.status == "held":
        return "held"
    if outcome.status == "published" and set(faulty) <= outcome.carried:
        return "excluded"
    return "missed" if outcome.status == "published" else outcome.status


@pytest.mark.parametrize("dataset", list(SETUPS))
def test_clean_control_delivery_publishes(
    dataset: str, bases: Callable[[str], Base], tmp_path: Path, figure: Record
) -> None:
    base = bases(dataset)
    driver = base.driver.copy(tmp_path / "ws", cli=True)
    driver.ingest(base.delivery, "control")
    outcome = driver.run(base.delivery)
    junk = garbage(outcome.served, base.history, driver.feed)
    figure(
        "feed-faults",
        violations=int(outcome.status != "published") + len(outcome.carried) + len(junk),
        value=f"{dataset} control: {outcome.status}, {len(outcome.carried)} excluded",
        dataset=dataset,
        fault="control",
        scope="fleet",
        outcome=outcome.status,
        excluded=sorted(outcome.carried),
        garbage=junk,
    )
    assert outcome.status == "published", outcome
    assert not outcome.carried, f"clean series left out: {sorted(outcome.carried)}"
    assert not junk, junk


@pytest.mark.parametrize(("dataset", "fault", "scope"), _cases())
def test_faulty_delivery_is_held_or_excluded_and_nothing_garbage_is_served(
    dataset: str,
    fault: str,
    scope: str,
    bases: Callable[[str], Base],
    tmp_path: Path,
    figure: Record,
) -> None:
    base = bases(dataset)
    setup = SETUPS[dataset]
    assert applicable(base.driver.feed, fault)
    faulty = list(base.driver.feed.series) if scope == "fleet" else list(setup.few)
    broken = FAULTS[fault](
        base.delivery, None if scope == "fleet" else setup.few, history=base.history
    )
    driver = base.driver.copy(tmp_path / "ws", cli=(dataset, fault, scope) in CLI_CASES)
    driver.ingest(broken, fault)
    outcome = driver.run(broken)
    verdict = _judge(outcome, faulty)
    unnamed = names(outcome.incidents, fault, None if scope == "fleet" else faulty)
    junk = garbage(outcome.served, base.history, driver.feed)
    figure(
        "feed-faults",
        violations=int(verdict not in ("held", "excluded")) + int(bool(unnamed)) + len(junk),
        value=f"{dataset} {fault} {scope}: {verdict}",
        dataset=dataset,
        fault=fault,
        scope=scope,
        outcome=verdict,
        unnamed=unnamed,
        garbage=junk,
        clean_series_excluded=sorted(outcome.carried - set(faulty)),
    )
    assert verdict in ("held", "excluded"), (
        f"{fault} in {scope} of {dataset} was {verdict}: run {outcome.status}, "
        f"faulty series forecast from the faulty data: {sorted(set(faulty) - outcome.carried)}"
    )
    assert not unnamed, (
        f"no open incident names {unnamed}; open: {[i['title'] for i in outcome.incidents]}"
    )
    assert not junk, f"garbage served after {fault} in {scope}: {junk}"


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_breaks_exactly_the_series_it_names(fault: str) -> None:
    """The suite's own premise: a fault in a few series leaves the others byte for byte, and
    changes every row of the series it names."""
    feed = gefcom()
    history, delivery = feed.split(SETUPS["gefcom"].cut, SETUPS["gefcom"].history_steps)
    few = list(SETUPS["gefcom"].few)
    broken = FAULTS[fault](delivery, few, history=history)
    key = ["unique_id", "ds"]
    clean = delivery[~delivery["unique_id"].isin(few)].sort_values(key).reset_index(drop=True)
    kept = broken[~broken["unique_id"].isin(few)].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(clean, kept)
    before = delivery[delivery["unique_id"].isin(few)].sort_values(key).reset_index(drop=True)
    after = broken[broken["unique_id"].isin(few)].sort_values(key).reset_index(drop=True)
    assert len(before) == len(after)
    changed = (before["y"] != after["y"]) | (before["ds"] != after["ds"])
    assert changed.mean() > 0.95, f"{fault} changed only {changed.mean():.0%} of the rows"
