"""GEFCom2012 with temperatures: the covariate regression on the hidden backcast weeks.

    python bench/covariates_gefcom.py [--data DIR] [--split dev|test|all] [--years N]

The organisers' "vanilla" benchmark (Hong's multiple linear regression with actual
temperatures) scores OWA 0.450 against Naive2 on all zones. This runs steadycast's
``CovariateRegression`` (models/exogenous.py) the same way: each zone x hidden week is one
series, fitted on up to ``--years`` of load before the week, with the actual temperatures of
the week as its future covariate. A zone's temperature is either the mean of the 11 stations
or the one station that forecast the zone best on training history only (a month before the
first hidden week, fitted on the two years before it). Scores (sMAPE, MASE, OWA against Naive2)
use bench/accuracy.py's GEFCom setup: the same series, truth, Naive2 and MASE scale.
Writes markdown to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy as A
from steadycast.forecasting.backtest import model_history, task_for
from steadycast.models.base import ForecastTask
from steadycast.models.exogenous import CovariateRegression

HORIZON = 168


def _stations(folder: Path) -> pd.DataFrame:
    """Hourly temperatures of the 11 stations, wide: ``ds`` and ``s1``..``s11``."""
    raw = pd.read_csv(folder / "temperature_history.csv.gz").rename(
        columns={"station_id": "zone_id"}
    )
    long = A._gefcom_long(raw)
    wide = long.pivot(index="ds", columns="zone_id", values="y")
    wide.columns = [f"s{c}" for c in wide.columns]
    return wide.reset_index()


def _loads(folder: Path) -> pd.DataFrame:
    """Load history with the published truth of the gap weeks, as bench/accuracy.py builds it."""
    history = A._gefcom_long(pd.read_csv(folder / "Load_history.csv.gz", thousands=","))
    solution = pd.read_csv(folder / "Load_solution.csv")
    backcast = solution[(solution["weight"] == 1) & (solution["zone_id"] <= 20)]
    truth = A._gefcom_long(backcast.drop(columns=["id", "weight"]))
    full = pd.concat([history.dropna(subset=["y"]), truth])
    return full.drop_duplicates(["zone_id", "ds"], keep="last").sort_values(["zone_id", "ds"])


def _frame(
    loads: pd.DataFrame,
    temps: pd.DataFrame,
    uid: str,
    zone: int,
    first: pd.Timestamp,
    span: pd.Timedelta,
    temperature: str,
) -> pd.DataFrame:
    """One series: its load before ``first`` (at most ``span``), then ``HORIZON`` rows with y NaN,
    each with the temperature column ``temperature``."""
    rows = loads[(loads["zone_id"] == zone) & (loads["ds"] < first) & (loads["ds"] >= first - span)]
    future = pd.DataFrame({"ds": pd.date_range(first, periods=HORIZON, freq="h"), "y": np.nan})
    frame = pd.concat([rows[["ds", "y"]], future], ignore_index=True)
    frame = frame.merge(temps[["ds", temperature]], on="ds", how="left")
    frame = frame.rename(columns={temperature: "temperature"})
    frame["temperature"] = frame["temperature"].interpolate(limit_direction="both")
    return frame.assign(unique_id=uid)[["unique_id", "ds", "y", "temperature"]]


def best_stations(
    loads: pd.DataFrame, temps: pd.DataFrame, zones: list[int], cut: pd.Timestamp
) -> dict[int, str]:
    """Per zone, the station whose temperatures forecast the 4 weeks before ``cut`` best
    (fitted on the two years before them): training history only."""
    task = ForecastTask(
        horizon=24 * 28, frequency="h", season_length=24, covariates=("temperature",)
    )
    start = cut - pd.Timedelta(weeks=4)
    stations = [c for c in temps.columns if c.startswith("s")]
    frames = []
    for zone in zones:
        for station in stations:
            uid = f"{zone}|{station}"
            f = _frame(loads, temps, uid, zone, start, pd.Timedelta(days=730), station)
            f = f[f["ds"] < cut]
            frames.append(f)
    fc = CovariateRegression().forecast(pd.concat(frames, ignore_index=True), task)
    actual = loads.assign(unique_id=None)
    errors = {}
    for uid, rows in fc.groupby("unique_id"):
        zone, station = str(uid).split("|")
        real = actual[(actual["zone_id"] == int(zone)) & actual["ds"].isin(rows["ds"])]
        joined = rows.merge(real[["ds", "y"]], on="ds")
        errors[(int(zone), station)] = float(np.mean(np.abs(joined["yhat"] - joined["y"])))
    return {z: min(stations, key=lambda s: errors[(z, s)]) for z in zones}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("STEADYCAST_DATA") or str(A.REPO.parent / "shared" / "data")
    parser.add_argument("--data", default=default)
    parser.add_argument("--split", default="dev", choices=["dev", "test", "all"])
    parser.add_argument("--years", type=float, default=3.0)
    args = parser.parse_args(argv)
    data = Path(args.data)
    folder = data / "gefcom2012_load"
    dataset = A.gefcom(data, quick=False, split=args.split)
    loads, temps = _loads(folder), _stations(folder)
    temps["mean"] = temps[[c for c in temps.columns if c.startswith("s")]].mean(axis=1)
    ids = sorted(dataset.test["unique_id"].unique())
    firsts = {u: pd.Timestamp(u.split("@")[1]) + pd.Timedelta(hours=1) for u in ids}
    zones = sorted({int(u[1:3]) for u in ids})
    span = pd.Timedelta(days=round(365 * args.years))
    task = ForecastTask(
        horizon=HORIZON, frequency="h", season_length=24, covariates=("temperature",)
    )

    cpu = time.process_time()
    chosen = best_stations(loads, temps, zones, min(firsts.values()))
    choose_cpu = time.process_time() - cpu
    forecasts: dict[str, pd.DataFrame | pd.Series] = {}
    cost: dict[str, float] = {}
    for label, column_of in (
        ("mean of the 11 stations", lambda z: "mean"),
        ("best station per zone", lambda z: chosen[z]),
    ):
        frames = [
            _frame(loads, temps, u, int(u[1:3]), firsts[u], span, column_of(int(u[1:3])))
            for u in ids
        ]
        cpu = time.process_time()
        fc = CovariateRegression().forecast(pd.concat(frames, ignore_index=True), task)
        cost[label] = (time.process_time() - cpu) / len(ids)
        forecasts[f"CovariateRegression ({label})"] = fc
    organisers = "GEFCom organisers' benchmark (uses actual temperatures)"
    forecasts[organisers] = dataset.extra[organisers]
    own = A.naive2_forecasts(
        model_history(dataset.history), task_for(dataset.config), dataset.mase_season
    )
    naive2 = A._align(dataset.test, own, "Naive2")["Naive2"]
    forecasts["Naive2"] = naive2
    table = A.score_table(A.series_scores(dataset, forecasts, naive2))
    print(
        f"GEFCom2012 hidden weeks, split {args.split}: {len(ids)} series (zones {zones[0]}-{zones[-1]}"
        f" x {len(ids) // len(zones)} weeks), h={HORIZON}, up to {args.years:g} years of history\n"
    )
    print("| method | sMAPE | MASE | OWA | CPU-s per series |\n| --- | --- | --- | --- | --- |")
    for name, row in table.iterrows():
        per = next((f"{v:.3f}" for k, v in cost.items() if k in str(name)), "")
        print(f"| {name} | {row['smape']:.3f} | {row['mase']:.3f} | {row['owa']:.3f} | {per} |")
    print(
        f"\nStations chosen on training history only ({choose_cpu:.1f} CPU-s for all zones): "
        + ", ".join(f"zone {z}: {s}" for z, s in chosen.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
