"""Feed-fault check on real data: false alarms on clean deliveries, and each fault caught.

Replays each dataset in ``../shared/data`` as a sequence of deliveries through the
``feed_fault`` check with the default settings (the data newer than the previous delivery
is the newest delivery), counting the (series, delivery) pairs it flags; then corrupts one
delivery per cut point with each fault from ``tests/reliability/feeds.py``, in the whole fleet
and in one series, and counts how often the faulty series are flagged with the right kind.

    .venv/bin/python -m bench.feed_faults [DATASET ...] [--only=FAULT,...] [--no-sweep]

Measured with the defaults (clean: pairs excluded / shift warnings / runs held, of the
(series, delivery) pairs judged; faults: share of faulty (series, delivery) pairs flagged with
the right kind when the whole fleet is corrupted, then one series at a time):

    dataset       clean pairs  excluded  warned  held  x1000  /1000  zeros  register  stuck  sign  shift
    cta                   897         0       0     0   100%   100%   100%      100%   100%  100%    -
    fred_md              7083         0       0     0   100%    95%   100%      100%    98%   92%    -
    m4_weekly           11689         1       0     0   100%   100%   100%       95%    99%   99%    -
    m4_daily (young)      200         0       0     0   100%   100%   100%       84%    91%  100%    -
    sgsc                 4038         0      15     0    93%    87%    90%       98%    90%   72%   96%
    gefcom               4500         0       5     0   100%   100%   100%      100%    92%  100%   83%

A fleet-wide fault holds the run when more than 30% of its series are flagged: every fault
above holds. Time-zone shifts in detail (the suite's +5 h, and -5 h and +11 h; the clean
controls are a delivery missing its first 3 hours in every series, or its last 3 hours in one
series, and count series excluded; runs held of the 12 cut points in brackets):

    dataset   fault           whole fleet            one series
    sgsc      +5 h            96% (held 12 of 12)    6 of 9
    sgsc      -5 h            87% (held 10 of 12)    4 of 9
    sgsc      +11 h           94% (held 12 of 12)    4 of 9
    sgsc      clean gap/late  0 excluded, 0 held     0 excluded
    gefcom    +5 h            83% (held 10 of 12)    10 of 12
    gefcom    -5 h            76% (held 10 of 12)    11 of 12
    gefcom    +11 h           83% (held 10 of 12)    7 of 12
    gefcom    clean gap/late  0 excluded, 0 held     0 excluded

A shift is confirmed by the seam (a delivery moved +k hours starts k hours after the last
stored time; moved -k hours it ends k hours before the rest of the fleet) and the daily
profile moved by those hours, summed over the series displaced alike. GEFCom's misses are the
cut points next to the weeks missing from its history (no week before to compare with). A
whole fleet moved earlier shows no seam (its first hours rewrite stored ones): the fleet's
summed profile alone must show it: fifty households' mostly do, six households' often not.
One series' profile moved with no displacement at its seam only warns (the "warned" column):
clean profiles move (a holiday, a daylight-saving change in UTC data). GEFCom's +11 h in one
series is hard: a winter profile's two peaks are about half a day apart.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import numpy as np
import pandas as pd
from tests.reliability import feeds

from steadycast.config import PipelineConfig
from steadycast.quality import checks

EXPECTED = {
    "scale_x1000": {"scale", "register"},
    "scale_div1000": {"scale"},
    "zeros": {"zeros"},
    "cumulative": {"register", "scale"},
    "stuck": {"stuck"},
    "sign_flip": {"sign"},
    "time_shift": {"shift"},
}


def _shift_back(delivery: pd.DataFrame, series=None, **_: object) -> pd.DataFrame:
    """Timestamps moved 5 hours earlier: the delivery rewrites the last 5 stored hours."""
    return feeds.time_shift(delivery, series, hours=-5)


def _shift_11h(delivery: pd.DataFrame, series=None, **_: object) -> pd.DataFrame:
    return feeds.time_shift(delivery, series, hours=11)


def _drop(delivery: pd.DataFrame, series, hours: int, head: bool) -> pd.DataFrame:
    """A clean delivery missing its first (or last) hours: a gap or a late feed, not a fault."""
    hit = feeds._hit(delivery, series)
    ds = delivery["ds"]
    edge = ds.min() + pd.Timedelta(hours=hours) if head else ds.max() - pd.Timedelta(hours=hours)
    gone = hit & ((ds < edge) if head else (ds > edge))
    return delivery[~gone]


def _gap_3h(delivery: pd.DataFrame, series=None, **_: object) -> pd.DataFrame:
    return _drop(delivery, series, 3, head=True)


def _late_3h(delivery: pd.DataFrame, series=None, **_: object) -> pd.DataFrame:
    return _drop(delivery, series, 3, head=False)


# Beyond the suite's faults: a shift back in time, a shift of 11 hours, and two clean controls
# (a delivery missing its first or last 3 hours) that must not be called a shift.
EXTRA = {
    "shift_-5h": _shift_back,
    "shift_+11h": _shift_11h,
    "clean_gap_3h": _gap_3h,
    "clean_late_3h": _late_3h,
}
EXPECTED.update({"shift_-5h": {"shift"}, "shift_+11h": {"shift"}})
SUB_DAILY = {"time_shift", *EXTRA}


def _config(feed: feeds.Feed) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": feed.name,
            "source": {},
            "series": {
                "frequency": feed.frequency,
                "horizon": feed.horizon,
                "season_lengths": list(feed.season_lengths),
            },
        }
    )


def _utc(feed: feeds.Feed) -> pd.DataFrame:
    """The feed as the product stores it: naive UTC."""
    frame = feed.frame
    if feed.timezone == "UTC":
        return frame
    ds = frame["ds"].dt.tz_localize(feed.timezone, ambiguous="NaT", nonexistent="NaT")
    out = frame.assign(ds=ds.dt.tz_convert("UTC").dt.tz_localize(None))
    return out.dropna(subset=["ds"]).reset_index(drop=True)


def _judge(frame, cfg, specs, delivered_after):
    spec = specs["feed_fault"]
    ctx = checks.CheckContext.from_config(cfg, delivered_after=delivered_after)
    return [r for r in checks.check_feed_fault(frame, spec, ctx) if not r.passed]


def _kind(sentence: str) -> str:
    return sentence.split("feed fault '")[1].split("'")[0]


def sweep(feed: feeds.Feed, frame: pd.DataFrame, cfg, specs) -> tuple[int, int, int, Counter]:
    """Clean replay: (deliveries, pairs judged, pairs flagged, kinds)."""
    keep = _keep(cfg, specs, feed)
    times = _times(feed, frame)
    flagged, judged, kinds, n, holds = 0, 0, Counter(), 0, 0
    spec = specs["feed_fault"]
    ds = frame["ds"]
    for at in range(keep, len(times) - 1, feed.sweep_steps):
        cut, upto = times[at], times[min(at + feed.sweep_steps, len(times) - 1)]
        part = frame[(ds >= times[at - keep]) & (ds < upto)]
        found = _judge(part, cfg, specs, times[at - 1])
        n += 1
        series = part["unique_id"].nunique()
        figures = checks.RunFigures(series=series, feed_faults=len(found))
        ctx = checks.CheckContext.from_config(cfg)
        (share,) = checks.check_feed_fault_share(figures, spec, ctx, found)
        if not share.passed:
            holds += 1
            print("   HOLD:", share.sentence[:300])
        judged += part.loc[part["ds"] >= cut, "unique_id"].nunique()
        flagged += len(found)
        kinds.update(f"{_kind(r.sentence)}/{r.policy}" for r in found)
        for r in found[:3]:
            print("   clean flag:", r.sentence[:300])
    kinds["fleet holds"] = holds
    return n, judged, flagged, kinds


def _keep(cfg, specs, feed) -> int:
    if feed.name == "m4_daily":  # young series: 10 days of history, see feeds.m4_daily
        return 10
    period = checks.reference_period(max(1, cfg.series.season_length))
    return (specs["feed_fault"].params["periods"] + 3) * period + 2 * feed.sweep_steps


def _times(feed: feeds.Feed, frame: pd.DataFrame) -> list[pd.Timestamp]:
    """Every step of the feed's grid from its first to its last time."""
    lo, hi = frame["ds"].min(), frame["ds"].max()
    return list(pd.date_range(lo, hi, freq=feed.frequency))


def faults(feed: feeds.Feed, frame: pd.DataFrame, cfg, specs, n_cuts: int = 12, only=()) -> dict:
    keep = _keep(cfg, specs, feed)
    times = _times(feed, frame)
    pick = np.unique(np.linspace(keep, len(times) - feed.delivery_steps, n_cuts).astype(int))
    ids = sorted(frame["unique_id"].unique())
    table = {}
    for name, fault in {**feeds.FAULTS, **EXTRA}.items():
        if name in SUB_DAILY and feed.frequency not in ("1h", "30min"):
            continue
        if only and name not in only:
            continue
        caught_all = caught_one = total_all = total_one = held = 0
        missed = []
        for i, at in enumerate(pick):
            cut = times[at]
            ds = frame["ds"]
            history = frame[(ds >= times[at - keep]) & (ds < cut)]
            last = times[min(at + feed.delivery_steps, len(times)) - 1]
            delivery = frame[(ds >= cut) & (ds <= last)]
            one = [ids[i % len(ids)]]
            for scope, series in (("all", None), ("one", one)):
                bad = fault(delivery, series, history=history)
                # As ingest stores it: a row for a stored time replaces the stored one.
                both = pd.concat([history, bad]).drop_duplicates(["unique_id", "ds"], keep="last")
                found = _judge(both, cfg, specs, times[at - 1])
                hit = {r.unique_id for r in found if _kind(r.sentence) in EXPECTED.get(name, ())}
                if name.startswith("clean"):  # counted: series excluded (false alarms)
                    hit = {r.unique_id for r in found if r.blocking}
                want = set(delivery["unique_id"].unique()) if series is None else set(one)
                want &= set(history["unique_id"].unique())
                if scope == "all":
                    total_all += len(want)
                    caught_all += len(want & hit)
                    held += len(want & hit) > 0.3 * len(want)  # the fleet share that holds
                else:
                    total_one += len(want)
                    caught_one += len(want & hit)
                    wrong = {r.unique_id for r in found} - want
                    if wrong:
                        missed.append(f"other series flagged: {sorted(wrong)[:3]}")
                for uid in sorted(want - hit)[:1]:
                    why = [r.sentence[:200] for r in found if r.unique_id == uid]
                    missed.append(f"{cut} {uid}: {why or 'not flagged'}")
        table[name] = (caught_all, total_all, caught_one, total_one, held, len(pick), missed[:3])
    return table


def main(args: list[str]) -> None:
    """``DATASET ...`` (default: all), ``--only=FAULT,...`` (default: all), ``--no-sweep``."""
    only = [a.split("=", 1)[1].split(",") for a in args if a.startswith("--only=")]
    names = [a for a in args if not a.startswith("--")]
    for name in names or list(feeds.FEEDS):
        if name == "gefcom":
            feed = feeds.gefcom(range(1, 21))
        elif name == "sgsc":
            feed = feeds.sgsc(sorted(feeds._sgsc_all()["unique_id"].unique()))
        elif name == "m4_weekly":
            feed = feeds.m4_weekly(120)
        else:
            feed = feeds.FEEDS[name]()
        cfg = _config(feed)
        specs = checks.build_specs(cfg)
        frame = _utc(feed)
        t0 = time.perf_counter()
        if "--no-sweep" in args:
            n = judged = flagged = 0
            kinds: Counter = Counter()
        else:
            n, judged, flagged, kinds = sweep(feed, frame, cfg, specs)
        print(
            f"{name}: clean sweep {n} deliveries, {judged} (series, delivery) pairs, "
            f"{flagged} flagged {dict(kinds)} ({time.perf_counter() - t0:.0f} s)"
        )
        for fault, (ca, ta, co, to, held, cuts, missed) in faults(
            feed, frame, cfg, specs, only=only[0] if only else ()
        ).items():
            print(f"  {fault:14s} fleet {ca}/{ta} (held {held}/{cuts})  one series {co}/{to}")
            for m in missed:
                print("     ", m)
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
