"""Fast-tier benchmark: steadycast's vectorised baselines against statsforecast's same models.

On the same generated frame in the same process, one model per call, horizon 24:

- statsforecast: ``StatsForecast(models=[M], freq="h", n_jobs=1).forecast(df, h=24)``, on the
  first ``--sf-sample`` series (statsforecast's cost is linear in series, so a sample gives its
  cost per series without minutes of waiting);
- steadycast: ``FastM().forecast(history, task)`` on every series.

Each pair's forecasts (and intervals, where asked) are compared on the sampled series; the run
fails if any differs by more than 1e-9 (relative, or absolute below 1).

    python bench/fast_tier.py [--series 10000 100000] [--sf-sample 10000] [--days 28]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, today, write_section

from steadycast.models.base import ForecastTask
from steadycast.models.fast import FastSeasonalNaive, FastSES, FastWindowAverage

HORIZON = 24
SEASON = 24
LEVELS = (80, 95)
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Case:
    label: str
    statsforecast: Callable[[], Any]  # builds the statsforecast model (imported late)
    fast: Callable[[], Any]
    intervals: bool = False


def cases() -> list[Case]:
    from statsforecast.models import (
        SeasonalNaive,
        SimpleExponentialSmoothing,
        SimpleExponentialSmoothingOptimized,
        WindowAverage,
    )

    return [
        Case("SeasonalNaive(24)", lambda: SeasonalNaive(SEASON), FastSeasonalNaive),
        Case(
            "SeasonalNaive(24), intervals 80/95",
            lambda: SeasonalNaive(SEASON),
            FastSeasonalNaive,
            intervals=True,
        ),
        Case(
            "WindowAverage(24)",
            lambda: WindowAverage(SEASON),
            lambda: FastWindowAverage(window_size=SEASON),
        ),
        Case(
            "SES(alpha=0.3)",
            lambda: SimpleExponentialSmoothing(0.3),
            lambda: FastSES(alpha=0.3),
        ),
        Case("SES, alpha optimised", SimpleExponentialSmoothingOptimized, FastSES),
    ]


def generate(series: int, days: int, seed: int = 42) -> pd.DataFrame:
    """Meter-like hourly series: a daily cycle with a random phase, a weekend lift, noise."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-01-01", periods=24 * days, freq="h")
    hour = ds.hour.to_numpy()
    weekly = 1 + 0.15 * (ds.dayofweek.to_numpy() >= 5)
    level = rng.uniform(0.3, 3.0, (series, 1))
    phase = rng.integers(0, 24, (series, 1))
    daily = 1 + 0.6 * np.sin(2 * np.pi * (hour - phase) / 24)
    y = np.maximum(0, level * daily * weekly + rng.normal(0, 1, (series, len(ds))) * 0.1 * level)
    ids = np.array([f"s{i:07d}" for i in range(series)], dtype=object)
    return pd.DataFrame(
        {
            "unique_id": np.repeat(ids, len(ds)),
            "ds": np.tile(ds.to_numpy(), series),
            "y": y.reshape(-1),
        }
    )


def timed(call: Callable[[], pd.DataFrame]) -> tuple[pd.DataFrame, float, float]:
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    out = call()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def run_statsforecast(model: Any, df: pd.DataFrame, intervals: bool) -> pd.DataFrame:
    from statsforecast import StatsForecast

    level = list(LEVELS) if intervals else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = StatsForecast(models=[model], freq="h", n_jobs=1).forecast(
            df=df, h=HORIZON, level=level
        )
    name = repr(model)
    return out.rename(
        columns=lambda c: (
            str(c).replace(name, "yhat").replace("-lo-", "_lo_").replace("-hi-", "_hi_")
        )
    )


def max_difference(ours: pd.DataFrame, theirs: pd.DataFrame, intervals: bool) -> float:
    """Largest relative difference (absolute below 1) over forecasts and bounds."""
    columns = ["yhat"]
    if intervals:
        columns += [f"yhat_{side}_{level}" for level in LEVELS for side in ("lo", "hi")]
    ours = ours[ours["unique_id"].isin(theirs["unique_id"])]
    merged = ours.merge(theirs, on=["unique_id", "ds"], suffixes=("", "_sf"), validate="1:1")
    if len(merged) != len(theirs) or len(merged) != len(ours):
        return float("inf")
    worst = 0.0
    for column in columns:
        ref = merged[f"{column}_sf"].to_numpy()
        diff = np.abs(merged[column].to_numpy() - ref) / np.maximum(1.0, np.abs(ref))
        worst = max(worst, float(diff.max()))
    return worst


def run(series: int, sf_sample: int, days: int) -> dict[str, Any]:
    df = generate(series, days)
    sample = min(series, sf_sample)
    sample_df = df.iloc[: sample * 24 * days].reset_index(drop=True)
    warm = df.iloc[: 3 * 24 * days]
    rows = []
    for case in cases():
        task = ForecastTask(
            horizon=HORIZON,
            frequency="h",
            season_length=SEASON,
            levels=LEVELS if case.intervals else (),
        )
        run_statsforecast(case.statsforecast(), warm, case.intervals)  # imports, first-call costs
        case.fast().forecast(warm, task)
        theirs, sf_wall, sf_cpu = timed(
            lambda case=case: run_statsforecast(case.statsforecast(), sample_df, case.intervals)
        )
        ours, fast_wall, fast_cpu = timed(
            lambda case=case, task=task: case.fast().forecast(df, task)
        )
        rows.append(
            {
                "model": case.label,
                "sf_series": sample,
                "sf_wall_s": round(sf_wall, 3),
                "sf_ms_per_series": sf_wall / sample * 1e3,
                "sf_cpu_ms_per_series": sf_cpu / sample * 1e3,
                "fast_series": series,
                "fast_wall_s": round(fast_wall, 3),
                "fast_ms_per_series": fast_wall / series * 1e3,
                "fast_cpu_ms_per_series": fast_cpu / series * 1e3,
                "ratio": (fast_wall / series) / (sf_wall / sample),
                "max_rel_diff": max_difference(ours, theirs, case.intervals),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        del theirs, ours
    return {
        "series": series,
        "days": days,
        "sf_sample": sample,
        "rows": rows,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def _ms(value: float) -> str:
    return f"{value:.4f} ms" if value < 0.1 else f"{value:.3f} ms"


def markdown(results: list[dict[str, Any]], command: str) -> str:
    parts = [
        f"""## Fast tier: vectorised baselines against statsforecast

{today()} on {machine()}. Reproduce: `{command}`.

Generated hourly meter-like series ({results[0]["days"]} days, {results[0]["days"] * 24} points
each), horizon {HORIZON}, season {SEASON}, one model per call, in one process. statsforecast:
`StatsForecast(models=[M], freq="h", n_jobs=1).forecast(df, h={HORIZON})` on the first series of
the frame (the sample); steadycast: `steadycast.models.fast` on every series. Both include
reading the long frame and building the output frame. Cost per series is wall time divided by
series; CPU per series is the process CPU time (the machine is shared, so CPU is the steadier
figure). Ratio: fast-tier cost per series over statsforecast's (target: at most 1x). Max diff:
largest relative difference (absolute below 1) of forecasts and bounds over the sample (target:
1e-9).
"""
    ]
    for r in results:
        parts.append(
            f"""### {r["series"]:,} series (statsforecast on {r["sf_sample"]:,})

| model | statsforecast per series (CPU) | fast tier per series (CPU) | fast tier, all series | **ratio** | max diff |
| --- | ---: | ---: | ---: | ---: | ---: |
"""
            + "\n".join(
                f"| {row['model']} | {_ms(row['sf_ms_per_series'])} "
                f"({_ms(row['sf_cpu_ms_per_series'])}) | {_ms(row['fast_ms_per_series'])} "
                f"({_ms(row['fast_cpu_ms_per_series'])}) | {row['fast_wall_s']} s | "
                f"**{row['ratio']:.3f}x** | {row['max_rel_diff']:.1e} |"
                for row in r["rows"]
            )
            + f"\n\nPeak memory of the process: {r['peak_rss_mb']:,} MB.\n"
        )
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--sf-sample", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=28)
    args = parser.parse_args()
    results = [run(n, args.sf_sample, args.days) for n in args.series]
    command = "python bench/fast_tier.py --series " + " ".join(map(str, args.series))
    if args.sf_sample != 10_000:
        command += f" --sf-sample {args.sf_sample}"
    if args.days != 28:
        command += f" --days {args.days}"
    path = write_section("fast_tier", markdown(results, command))
    print(f"wrote {path}")
    unequal = [
        (r["series"], row["model"], row["max_rel_diff"])
        for r in results
        for row in r["rows"]
        if not row["max_rel_diff"] <= TOLERANCE
    ]
    if unequal:
        raise SystemExit(f"forecasts differ from statsforecast by more than {TOLERANCE}: {unequal}")


if __name__ == "__main__":
    main()
