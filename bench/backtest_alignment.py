"""Day-ahead forecasts from every day of a week: backtest windows lined up with the forecast's
hours and weekdays (the default) against windows one horizon apart ending at the history's end.

    python bench/backtest_alignment.py [--data ../shared/data] [--meters 200]

Two fleets, h = 48 steps, seasons of a day and a week, the default pool: generated hourly meters
(``steadycast synth``, no faults, 1,008 points of history) and the SGSC smart meters (real
half-hourly readings, 8 weeks of history). Each is forecast from seven origins a day apart (the
last week of the data), once with ``[backtest] step = 0`` (the default, ``auto_step``) and once
with ``step = 48``. A single origin judges one pair of weekdays; seven judge them all. MASE is
on each series' in-sample error of a seasonal naive at a day; coverage of the 80% and 95% bounds
on the observed points.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH, machine, today, write_section

from accuracy import _config, sgsc_readings
from steadycast.config import PipelineConfig
from steadycast.forecasting.forecast import run_partition
from steadycast.models.isolation import IsolatedRunner

HORIZON = 48
ORIGINS = 7


def generated(series: int) -> tuple[pd.DataFrame, PipelineConfig, int, int]:
    """Clean generated hourly meters, one week longer than the accuracy benchmark's."""
    from steadycast.synth import FaultRates, generate_fleet

    with tempfile.TemporaryDirectory() as tmp:
        fleet = generate_fleet(Path(tmp) / "f", series=series, days=51, faults=FaultRates.none())
        frame = pd.concat([pd.read_parquet(f) for f in fleet.files], ignore_index=True)
    frame = frame[["unique_id", "ds", "y"]].astype({"unique_id": str})
    if frame["ds"].dt.tz is not None:
        frame["ds"] = frame["ds"].dt.tz_localize(None)
    return frame, _config("h", HORIZON, [24, 168]), 24, 1008


def sgsc(data: Path) -> tuple[pd.DataFrame, PipelineConfig, int, int]:
    """The SGSC households on a 30-minute grid (gaps inside a history are interpolated)."""
    raw = sgsc_readings(data)
    frames = []
    for uid, rows in raw.groupby("unique_id"):
        y = rows.set_index("ds")["y"]
        grid = y.reindex(pd.date_range(y.index.min(), y.index.max(), freq="30min"))
        frames.append(pd.DataFrame({"unique_id": uid, "ds": grid.index, "y": grid.to_numpy()}))
    return pd.concat(frames, ignore_index=True), _config("30min", HORIZON, [48, 336]), 48, 336 * 8


def origins(
    frame: pd.DataFrame, day: int, keep: int
) -> Iterator[tuple[int, pd.DataFrame, pd.DataFrame]]:
    """The seven (origin, history, truth) cuts, a day apart, the last ending at the data's end."""
    frame = frame.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    age = frame.groupby("unique_id").cumcount(ascending=False).to_numpy()
    for k in range(ORIGINS):
        after = HORIZON + day * (ORIGINS - 1 - k)  # points after the origin
        history = frame[(age >= after) & (age < after + keep)].copy()
        history["y"] = history.groupby("unique_id")["y"].transform(
            lambda y: y.interpolate(limit_area="inside")
        )
        truth = frame[(age < after) & (age >= after - HORIZON)].dropna(subset=["y"])
        lengths = history.groupby("unique_id").size()
        kept = lengths.index[lengths == keep]
        yield (
            k,
            history[history["unique_id"].isin(kept)].reset_index(drop=True),
            truth[truth["unique_id"].isin(kept)],
        )


def score(history: pd.DataFrame, truth: pd.DataFrame, forecasts: pd.DataFrame, m: int) -> dict:
    """Mean MASE (seasonal naive at ``m`` in sample) and coverage, over series."""
    scale = history.groupby("unique_id")["y"].agg(
        lambda y: float(np.nanmean(np.abs(y.to_numpy()[m:] - y.to_numpy()[:-m])))
    )
    f = truth.merge(forecasts, on=["unique_id", "ds"])
    f["ae"] = (f["y"] - f["yhat"]).abs()
    f["c80"] = f["y"].between(f["yhat_lo_80"], f["yhat_hi_80"])
    f["c95"] = f["y"].between(f["yhat_lo_95"], f["yhat_hi_95"])
    per = f.groupby("unique_id").agg(mae=("ae", "mean"), c80=("c80", "mean"), c95=("c95", "mean"))
    per["mase"] = per["mae"] / scale.reindex(per.index)
    return {"mase": per["mase"].mean(), "c80": per["c80"].mean(), "c95": per["c95"].mean()}


def compare(name: str, frame: pd.DataFrame, config: PipelineConfig, day: int, keep: int) -> str:
    settings = {
        "lined up (default)": config,
        "one horizon apart": config.model_copy(
            update={"backtest": config.backtest.model_copy(update={"step": HORIZON})}
        ),
    }
    rows, totals = [], {s: [] for s in settings}
    with IsolatedRunner(workers=1, timeout_s=3600, memory_mb=4096) as runner:
        for k, history, truth in origins(frame, day, keep):
            weekday = truth["ds"].min().day_name()
            for setting, cfg in settings.items():
                result = run_partition(history, cfg, runner)
                s = score(history, truth, result.forecasts, day)
                totals[setting].append(s)
                chosen = result.selection["model"].where(
                    ~result.selection["model"].str.startswith("Ensemble("), "a combination"
                )
                top = ", ".join(f"{m} {n}" for m, n in chosen.value_counts().head(2).items())
                rows.append(
                    f"| {k + 1} ({weekday}) | {setting} | {s['mase']:.3f} | {s['c80']:.2f} "
                    f"| {s['c95']:.2f} | {top} |"
                )
                print(name, k, weekday, setting, s, flush=True)
    series = history["unique_id"].nunique()
    summary = [
        f"| all {ORIGINS} | {setting} | {np.mean([t['mase'] for t in ts]):.3f} "
        f"| {np.mean([t['c80'] for t in ts]):.2f} | {np.mean([t['c95'] for t in ts]):.2f} | |"
        for setting, ts in totals.items()
    ]
    return "\n".join(
        [
            f"### {name} ({series} series)",
            "",
            "| origin (first day forecast) | backtest windows | MASE | cov 80 | cov 95 | chosen |",
            "| --- | --- | ---: | ---: | ---: | --- |",
            *rows,
            *summary,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default_data = os.environ.get("STEADYCAST_DATA", str(BENCH.parent.parent / "shared" / "data"))
    parser.add_argument("--data", default=default_data)
    parser.add_argument("--meters", type=int, default=200, help="generated meters")
    args = parser.parse_args()
    sections = [
        compare("Generated hourly meters", *generated(args.meters)),
        compare("SGSC smart meters, day ahead", *sgsc(Path(args.data))),
    ]
    write_section(
        "backtest_alignment",
        f"""## Backtest windows lined up with the forecast: day-ahead from every weekday

{today()} on {machine()}. Reproduce: `OMP_WAIT_POLICY=passive python bench/backtest_alignment.py`
(part of `make bench`). h = 48, the default pool, seven origins a day apart; each row one
origin and one way of placing the three backtest windows.

{(chr(10) * 2).join(sections)}
""",
    )


if __name__ == "__main__":
    main()
