"""Accuracy benchmark: steadycast's per-series selection against baselines on real data.

    python bench/accuracy.py [--quick] [--data DIR] [--out FILE.md] [--workers N]
                             [--datasets m4,gefcom,sgsc,hourly] [--split dev|test|all]
                             [--candidates A,B,...] [--gefcom-weeks N] [--temperatures]
                             [--holdout] [--holidays]

1. Proves the metric code by reproducing the published M4 Weekly Naive2 figures (sMAPE 9.161,
   MASE 2.777) from the organisers' own Naive2 forecasts and from our Naive2.
2. Runs ``run_partition`` (profile, route, backtest, select, forecast, with the default pool
   of each dataset's frequency, or ``--candidates``, and the isolated runner) on
   - M4 Weekly: 359 series, h = 13, season 52 (M4 scores weekly MASE with m = 1, so that is
     used for the published comparison);
   - GEFCom2012 load: the 20 zones on the 8 hidden backcast weeks, each forecast from the
     weeks before it (h = 168 hours, seasons 24 and 168; earlier gap weeks are filled with their
     published truth, which lies in the past of the origin). Each hidden week is its own run
     (one partition of 20 zones, or 10 in a half): a global model trained across all weeks at
     once would learn from the later weeks' histories, three of which hold earlier hidden
     weeks, and from the future of every origin;
   - SGSC smart meters: each household's last week (h = 336 half-hours, seasons 48 and 336);
   - generated hourly meters (``hourly``, not run by default): 500 clean series of 1,008
     points, h = 48, seasons 24 and 168: the cost of the default on hourly data generally.
   With ``--temperatures`` GEFCom2012 runs as a pipeline declaring ``[covariates] columns =
   ["temperature"]``: every series gets the hourly mean of the 11 stations' actual
   temperatures (its history and its hidden week, as the organisers' benchmark used them),
   and the covariate models join the default pool. ``--gefcom-weeks`` gives more history
   (OWA and MASE stay on the scale of 12 weeks, the organisers' benchmark's); ``--holdout``
   runs the weeks a year after the hidden weeks instead, a development set for rules decided
   after the hidden weeks had been seen;
   and scores the selection and each single candidate on the held-out data: sMAPE, MASE, OWA
   against Naive2, coverage of the 80% and 95% intervals, and the CPU seconds per series of
   the selection's whole path (backtest and forecast: the run process and its model workers).

Development protocol: each dataset is split in two halves; pools and settings are tuned on the
DEV half only, and the other (TEST) half is reported. DEV is M4 Weekly series at even 0-based
positions in Weekly-train.csv file order (W1, W3, ...), GEFCom2012 zones 1-10, and the first 25
SGSC households in file order. ``--split dev`` (or ``test``) runs one half; ``--split all`` (the
default) runs every series and reports the selection on the dev half, the test half and the
whole, with the verdict whether it beats every single candidate on each.

The data directory defaults to ``../shared/data`` next to the repository (``--data`` or
``STEADYCAST_DATA`` override it). Not part of the test suite; writes markdown to stdout or
``--out``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from steadycast.config import PipelineConfig, parse_pipeline
from steadycast.forecasting import metrics as M
from steadycast.forecasting.backtest import Runner, call_models, model_history, task_for
from steadycast.forecasting.covariates import Covariates, with_covariates
from steadycast.forecasting.covariates import candidates as covariate_candidates
from steadycast.forecasting.forecast import PartitionResult, run_partition
from steadycast.models.base import Capabilities, ForecastTask
from steadycast.models.isolation import IsolatedRunner, ModelUsage
from steadycast.models.registry import available_models
from steadycast.models.validation import expected_timestamps, validate_forecast

REPO = Path(__file__).resolve().parents[1]
LEVELS = (80, 95)
PUBLISHED_METHODS = {
    "118": "Smyl (ES-RNN, 1st)",
    "245": "Montero-Manso et al. (2nd)",
    "237": "Pawlikowski et al. (3rd)",
    "Theta": "Theta",
    "Com": "Comb S-H-D",
    "SES": "SES",
    "sNaive": "sNaive",
    "Naive2": "Naive2",
}


# -- Naive2 (M4 benchmark) ----------------------------------------------------------------------


def seasonality_test(y: np.ndarray, m: int) -> bool:
    """M4's 90% autocorrelation test at lag m (needs three seasons of data).

    Unlike R's ``acf`` default, the autocorrelations are computed up to lag m whatever the
    series length (R stops at 10·log10(n) lags, which calls every long-season series
    non-seasonal).
    """
    n = len(y)
    if m <= 1 or n < 3 * m:
        return False
    x = y - y.mean()
    denom = float(np.dot(x, x))
    if denom == 0:
        return False
    acf = np.array([np.dot(x[k:], x[: n - k]) / denom for k in range(1, m + 1)])
    limit = 1.645 / np.sqrt(n) * np.sqrt(1 + 2 * np.sum(acf[: m - 1] ** 2))
    return bool(abs(acf[m - 1]) > limit)


def seasonal_indices(y: np.ndarray, m: int) -> np.ndarray:
    """Classical multiplicative decomposition (R ``decompose``): index by position mod m."""
    weights = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
    trend = np.convolve(y, weights, mode="same")
    half = len(weights) // 2
    trend[:half] = np.nan
    trend[len(y) - half :] = np.nan
    ratio = y / trend
    figure = np.array([np.nanmean(ratio[p::m]) for p in range(m)])
    return figure / figure.mean()


def naive2(y: np.ndarray, m: int, horizon: int) -> np.ndarray:
    """M4's Naive2: naive on the seasonally adjusted series when the test finds seasonality."""
    n = len(y)
    if seasonality_test(y, m) and np.all(y > 0):
        index = seasonal_indices(y, m)
        level = y[-1] / index[(n - 1) % m]
        return level * index[(n + np.arange(horizon)) % m]
    return np.full(horizon, y[-1], dtype=float)


def naive2_forecasts(history: pd.DataFrame, task: ForecastTask, m: int) -> pd.DataFrame:
    """Naive2 forecasts ``unique_id, ds, yhat`` for the task's horizon after each series."""
    last = history.groupby("unique_id", sort=False)["ds"].max()
    grid = expected_timestamps(last, task)
    values = {
        uid: naive2(rows["y"].to_numpy(dtype=float), m, task.horizon)
        for uid, rows in history.groupby("unique_id", sort=False)
    }
    grid["yhat"] = [values[u][s - 1] for u, s in zip(grid["unique_id"], grid["step"], strict=True)]
    return grid[["unique_id", "ds", "yhat"]]


# -- datasets -----------------------------------------------------------------------------------


@dataclass
class Dataset:
    name: str
    history: pd.DataFrame  # unique_id, ds, y
    test: pd.DataFrame  # unique_id, ds, y (the held-out truth)
    config: PipelineConfig
    mase_season: int  # the m of the MASE scale reported
    note: str
    extra: dict[str, pd.Series] | None = None  # other forecasts aligned with test rows
    dev: frozenset[str] = frozenset()  # series ids of the development half
    # Series run together (one run_partition each, as one forecast origin); None: all at once.
    origins: list[frozenset[str]] | None = None
    covariates: pd.DataFrame | None = None  # unique_id, ds and a column each, horizon included
    # The history Naive2 and the MASE scale are computed on (None: ``history``), so that runs
    # given more history are scored on the same scale as the published benchmarks.
    scale_history: pd.DataFrame | None = None

    def parts(self) -> list[Dataset]:
        """The dataset cut into its forecast origins (itself when it has none)."""
        if self.origins is None:
            return [self]
        return [
            replace(
                self,
                history=self.history[self.history["unique_id"].isin(ids)].reset_index(drop=True),
                test=self.test[self.test["unique_id"].isin(ids)].reset_index(drop=True),
                origins=None,
                covariates=None
                if self.covariates is None
                else self.covariates[self.covariates["unique_id"].isin(ids)].reset_index(drop=True),
            )
            for ids in self.origins
        ]


SPLITS = ("dev", "test", "all")


def in_split(ids: pd.Series, dev: frozenset[str], split: str) -> pd.Series:
    """Which of ``ids`` belong to ``split`` (dev half, test half or all)."""
    if split == "all":
        return pd.Series(True, index=ids.index)
    inside = ids.isin(dev)
    return inside if split == "dev" else ~inside


def keep_split(frame: pd.DataFrame, dev: frozenset[str], split: str) -> pd.DataFrame:
    return frame[in_split(frame["unique_id"], dev, split)].reset_index(drop=True)


# ``--candidates``: the models to run instead of the frequency's default pool.
CANDIDATES: list[str] = []


def _config(
    frequency: str, horizon: int, seasons: list[int], covariates: Sequence[str] = ()
) -> PipelineConfig:
    models: dict[str, object] = {"plugins": False}  # built-in models only
    if CANDIDATES:
        models["candidates"] = list(CANDIDATES)
    extra: dict[str, object] = {"covariates": {"columns": list(covariates)}} if covariates else {}
    return parse_pipeline(
        {
            "source": {},
            "series": {"frequency": frequency, "horizon": horizon, "season_lengths": seasons},
            "forecast": {"timeout_s": 3600, "memory_mb": 4096},
            "models": models,
            **extra,
        },
        "bench",
        "bench/accuracy.py",
    )


def _m4_long(path: Path) -> pd.DataFrame:
    wide = pd.read_csv(path).rename(columns={"V1": "unique_id"})
    long = wide.melt(id_vars="unique_id", var_name="col", value_name="y").dropna()
    long["i"] = long["col"].str[1:].astype(int) - 2  # V2 holds the first value
    return long.drop(columns="col").sort_values(["unique_id", "i"]).reset_index(drop=True)


def m4_weekly(data: Path, quick: bool, split: str = "all") -> tuple[Dataset, pd.DataFrame]:
    """M4 Weekly with made-up Sunday dates (M4 gives none; every series ends 2017-12-31)."""
    train = _m4_long(data / "m4" / "Weekly-train.csv")
    test = _m4_long(data / "m4" / "Weekly-test.csv")
    in_file_order = pd.read_csv(data / "m4" / "Weekly-train.csv", usecols=["V1"])["V1"]
    dev = frozenset(in_file_order.iloc[::2])  # even 0-based positions: W1, W3, ...
    train, test = keep_split(train, dev, split), keep_split(test, dev, split)
    if quick:  # every 6th series of each half present
        ids = sorted(train["unique_id"].unique(), key=lambda s: int(s[1:]))
        keep = [u for u in ids if u in dev][::6] + [u for u in ids if u not in dev][::6]
        train, test = train[train["unique_id"].isin(keep)], test[test["unique_id"].isin(keep)]
    end = pd.Timestamp("2017-12-31")
    n = train.groupby("unique_id")["i"].transform("max")
    train = train.assign(ds=end - pd.to_timedelta(7 * (n - train["i"]), unit="D"))
    test = test.assign(ds=end + pd.to_timedelta(7 * (test["i"] + 1), unit="D"))
    official = pd.read_csv(data / "m4" / "point_forecasts" / "submission-Naive2-HDW.csv")
    official = official[official["id"].isin(test["unique_id"].unique())]
    official = official.melt(id_vars="id", var_name="h", value_name="yhat").dropna()
    official["i"] = official["h"].str[1:].astype(int) - 1
    official = official.rename(columns={"id": "unique_id"})
    test = test.merge(official[["unique_id", "i", "yhat"]], on=["unique_id", "i"], how="left")
    bundled = test.pop("yhat")
    columns = ["unique_id", "ds", "y"]
    dataset = Dataset(
        name="M4 Weekly",
        history=train[columns].reset_index(drop=True),
        test=test[columns].reset_index(drop=True),
        config=_config("W-SUN", 13, [52]),
        mase_season=1,
        note="359 series (every 6th of each half in --quick), h=13, season 52; MASE with m=1 as in M4",
        dev=dev,
    )
    return dataset, pd.DataFrame({"Naive2 (M4 organisers' file)": bundled.to_numpy()})


def _gefcom_long(frame: pd.DataFrame) -> pd.DataFrame:
    hours = [f"h{k}" for k in range(1, 25)]
    long = frame.melt(id_vars=["zone_id", "year", "month", "day"], value_vars=hours, var_name="h")
    date = pd.to_datetime(long[["year", "month", "day"]])
    long["ds"] = date + pd.to_timedelta(long["h"].str[1:].astype(int), unit="h")
    long = long.rename(columns={"value": "y"})
    return long[["zone_id", "ds", "y"]].sort_values(["zone_id", "ds"]).reset_index(drop=True)


def _temperatures(folder: Path) -> pd.DataFrame:
    """``ds, temperature``: the hourly mean of the 11 stations' temperatures."""
    raw = pd.read_csv(folder / "temperature_history.csv.gz").rename(
        columns={"station_id": "zone_id"}
    )
    long = _gefcom_long(raw).dropna(subset=["y"])
    return long.groupby("ds", as_index=False)["y"].mean().rename(columns={"y": "temperature"})


def _holidays(folder: Path) -> set[pd.Timestamp]:
    """The days of the data set's holiday list (``Holiday_List.csv``: a column per year, its
    dates written as "Thursday, January 1"; New Year's Day observed in December says its year)."""
    table = pd.read_csv(folder / "Holiday_List.csv", index_col=0)
    days = set()
    for year in table.columns:
        for text in table[year].dropna().astype(str):
            written = text if text[-4:].isdigit() else f"{text}, {year}"
            days.add(pd.to_datetime(written, format="%A, %B %d, %Y").normalize())
    return days


def gefcom(
    data: Path,
    quick: bool,
    split: str = "all",
    weeks_of_history: int = 12,
    temperatures: bool = False,
    holdout: bool = False,
    holidays: bool = False,
) -> Dataset:
    """Each zone x backcast week is one series: the weeks before the gap, then the gap; with
    ``temperatures``, each series' covariate rows over its history and its gap (and with
    ``holidays`` a second covariate, 1 on the data set's holidays, else 0). ``holdout``:
    instead of the hidden weeks, the weeks 52 weeks after them, taken from the history (a
    development holdout for rules decided after the hidden weeks had been seen; no organisers'
    benchmark there)."""
    folder = data / "gefcom2012_load"
    history = _gefcom_long(pd.read_csv(folder / "Load_history.csv.gz", thousands=","))
    solution = pd.read_csv(folder / "Load_solution.csv")
    backcast = solution[(solution["weight"] == 1) & (solution["zone_id"] <= 20)]
    truth = _gefcom_long(backcast.drop(columns=["id", "weight"]))
    benchmark = pd.read_csv(folder / "Load_benchmark.csv")
    bench = _gefcom_long(benchmark[benchmark["id"].isin(backcast["id"])].drop(columns="id"))
    full = (
        pd.concat([history.dropna(subset=["y"]), truth])
        .drop_duplicates(["zone_id", "ds"], keep="last")
        .sort_values(["zone_id", "ds"])
    )
    starts = sorted(truth["ds"].dt.normalize().drop_duplicates())
    weeks = [d for d in starts if not any(d - pd.Timedelta(days=k) in starts for k in range(1, 7))]
    zones = sorted(truth["zone_id"].unique())
    dev_zones = {z for z in zones if z <= 10}
    zones = [z for z in zones if split == "all" or (z in dev_zones) == (split == "dev")]
    if quick:
        zones, weeks = zones[::5], weeks[::4]
    if holdout:
        weeks = [w + pd.Timedelta(weeks=52) for w in weeks]
        truth, bench = full, full.iloc[:0]
    span = pd.Timedelta(weeks=weeks_of_history)
    # Scored on the scale of 12 weeks of history whatever the history given, so that every
    # run is on the scale of the organisers' benchmark figure (OWA 0.450).
    scale_span = pd.Timedelta(weeks=12)
    parts, tests, benches, scale_parts = [], [], [], []
    for week in weeks:
        first = week + pd.Timedelta(hours=1)  # h1 of the gap's first day
        last = first + pd.Timedelta(hours=167)
        for zone in zones:
            uid = f"z{zone:02d}@{week.date()}"
            rows = full[full["zone_id"] == zone]
            past = rows[(rows["ds"] < first) & (rows["ds"] >= first - span)]
            parts.append(past.assign(unique_id=uid))
            scale_parts.append(past[past["ds"] >= first - scale_span].assign(unique_id=uid))
            gap = truth[(truth["zone_id"] == zone) & truth["ds"].between(first, last)]
            tests.append(gap.assign(unique_id=uid))
            b = bench[(bench["zone_id"] == zone) & bench["ds"].between(first, last)]
            benches.append(b.assign(unique_id=uid))
    columns = ["unique_id", "ds", "y"]
    test = pd.concat(tests)[columns].reset_index(drop=True)
    organisers = pd.concat(benches)[columns].rename(columns={"y": "yhat"})
    aligned = test.merge(organisers, on=["unique_id", "ds"], how="left")["yhat"]
    dev = frozenset(u for u in test["unique_id"].unique() if int(u[1:3]) in dev_zones)
    ids = pd.Series(test["unique_id"].unique())
    origins = [frozenset(group) for _, group in ids.groupby(ids.str.split("@").str[1])]
    history_rows = pd.concat(parts)[columns].reset_index(drop=True)
    covariates = None
    if temperatures:
        spans = pd.concat([history_rows, test]).groupby("unique_id")["ds"].agg(["min", "max"])
        weather = _temperatures(folder).set_index("ds")["temperature"]
        frames = []
        for uid, (start, end) in spans.iterrows():
            grid = pd.date_range(start, end, freq="h")
            values = weather.reindex(grid).interpolate(limit_direction="both").to_numpy()
            frames.append(pd.DataFrame({"unique_id": uid, "ds": grid, "temperature": values}))
        covariates = pd.concat(frames, ignore_index=True)
        if holidays:
            # Hour h24 is midnight of the next day: the hour ending at ds belongs to ds - 1 h.
            day = (covariates["ds"] - pd.Timedelta(hours=1)).dt.normalize()
            covariates["holiday"] = day.isin(_holidays(folder)).astype(float)
    columns_of_covariates = ["temperature", "holiday"] if holidays else ["temperature"]
    return Dataset(
        name="GEFCom2012 load (backcast weeks)",
        history=history_rows,
        test=test,
        config=_config("h", 168, [24, 168], columns_of_covariates if temperatures else []),
        mase_season=24,
        note=f"{len(zones)} zones x {len(weeks)} hidden weeks, {weeks_of_history} weeks of "
        "history each, h=168, seasons 24 and 168; MASE with m=24 and Naive2 on the last 12 "
        "weeks of history"
        + ("; actual temperatures (mean of 11 stations) as a covariate" if temperatures else "")
        + ("; the data set's holidays as a second covariate" if temperatures and holidays else ""),
        extra=None
        if holdout
        else {"GEFCom organisers' benchmark (uses actual temperatures)": aligned},
        dev=dev,
        origins=origins,
        covariates=covariates,
        scale_history=pd.concat(scale_parts)[columns].reset_index(drop=True),
    )


def hourly(quick: bool, split: str = "all", series: int = 500) -> Dataset:
    """Generated hourly meters (``steadycast.synth``, clean: no planted faults): 42 days of
    history (1,008 points), the next 48 hours held out; seasons 24 and 168. The cost target's
    shape ("hourly data generally"); every other series is DEV."""
    from steadycast.synth import FaultRates, generate_fleet

    n = max(series // 10, 20) if quick else series
    with tempfile.TemporaryDirectory() as tmp:
        fleet = generate_fleet(Path(tmp) / "fleet", series=n, days=44, faults=FaultRates.none())
        frame = pd.concat([pd.read_parquet(f) for f in fleet.files], ignore_index=True)
    frame = frame[["unique_id", "ds", "y"]].astype({"unique_id": str})
    frame = frame.sort_values(["unique_id", "ds"], kind="stable")
    frame["ds"] = frame["ds"].dt.tz_localize(None) if frame["ds"].dt.tz else frame["ds"]
    ids = sorted(frame["unique_id"].unique())
    dev = frozenset(ids[::2])
    ids = [u for u in ids if split == "all" or (u in dev) == (split == "dev")]
    frame = frame[frame["unique_id"].isin(ids)]
    horizon = 48
    age = frame.groupby("unique_id").cumcount(ascending=False)
    return Dataset(
        name="Generated hourly meters (cost)",
        history=frame[age >= horizon].reset_index(drop=True),
        test=frame[age < horizon].reset_index(drop=True),
        config=_config("h", horizon, [24, 168]),
        mase_season=24,
        note=f"{len(ids)} generated series (steadycast synth, no faults), 1,008 points of "
        "history, h=48, seasons 24 and 168; MASE with m=24",
        dev=dev,
    )


def sgsc_readings(data: Path) -> pd.DataFrame:
    """The SGSC households' readings as they are: ``unique_id, ds, y``."""
    raw = pd.read_csv(
        data / "sgsc_smart_meter_50" / "sm_cust50.csv.gz",
        usecols=["customer_id", "reading_datetime", "general_supply_kwh"],
        dtype={"customer_id": str},
        parse_dates=["reading_datetime"],
    )
    raw.columns = ["unique_id", "ds", "y"]
    return raw


def sgsc(data: Path, quick: bool, split: str = "all") -> Dataset:
    """Each household's last week held out; 8 weeks of history regularised to 30 min."""
    raw = sgsc_readings(data)
    dev = frozenset(raw["unique_id"].unique()[:25])  # the first 25 households in file order
    ids = [
        u
        for u in sorted(raw["unique_id"].unique())
        if split == "all" or (u in dev) == (split == "dev")
    ]
    if quick:
        ids = ids[::5]
    horizon, keep = 336, 336 * 8
    histories, tests = [], []
    for uid in ids:
        rows = raw[raw["unique_id"] == uid].set_index("ds")["y"]
        grid = pd.date_range(rows.index.min(), rows.index.max(), freq="30min")
        full = rows.reindex(grid)
        if len(full) < horizon + 3 * 336:
            continue
        held = full.iloc[-horizon:]
        past = full.iloc[:-horizon].iloc[-keep:].interpolate(limit_area="inside")
        histories.append(pd.DataFrame({"unique_id": uid, "ds": past.index, "y": past.to_numpy()}))
        observed = held.dropna()  # scored on real readings only, not on gaps
        tests.append(
            pd.DataFrame({"unique_id": uid, "ds": observed.index, "y": observed.to_numpy()})
        )
    return Dataset(
        name="SGSC smart meters (last week)",
        history=pd.concat(histories, ignore_index=True),
        test=pd.concat(tests, ignore_index=True),
        config=_config("30min", horizon, [48, 336]),
        mase_season=48,
        note=f"{len(histories)} households, 8 weeks of history, h=336 half-hours, seasons 48 "
        "and 336; MASE with m=48",
        dev=dev,
    )


# -- scoring ------------------------------------------------------------------------------------


def single_models(dataset: Dataset, runner: Runner) -> dict[str, pd.DataFrame]:
    """Each candidate alone on every series: one call per model and origin, validated."""
    if dataset.origins is not None:
        parts = [single_models(part, runner) for part in dataset.parts()]
        return {name: pd.concat([p[name] for p in parts], ignore_index=True) for name in parts[0]}
    task = task_for(dataset.config)
    history = model_history(dataset.history)
    candidates = candidate_names(dataset.config)
    jobs = [(m, dict(dataset.config.models.params.get(m, {})), history, task) for m in candidates]
    out: dict[str, pd.DataFrame] = {}
    covariates = covariates_of(dataset)
    models = available_models(plugins=False)
    caps = {m: getattr(models[m], "capabilities", Capabilities()) for m in candidates}
    calls = call_models(jobs, with_covariates(runner, covariates, caps))
    for name, result in zip(candidates, calls, strict=True):
        if isinstance(result, Exception):
            out[name] = pd.DataFrame(columns=["unique_id", "ds", "yhat"])
            continue
        valid, _ = validate_forecast(result, history, task, name)
        out[name] = valid
    return out


def candidate_names(config: PipelineConfig) -> list[str]:
    """The run's candidates: the pool and, with covariates declared, the covariate models."""
    return covariate_candidates(config, list(config.models.candidates))


def covariates_of(dataset: Dataset) -> Covariates | None:
    """The dataset's covariates as a run joins them, or None."""
    if dataset.covariates is None:
        return None
    return Covariates(dataset.covariates, tuple(dataset.config.covariates.columns))


def _align(test: pd.DataFrame, forecast: pd.DataFrame, name: str) -> pd.DataFrame:
    """``name`` and its bounds as columns aligned with the test rows (NaN where missing)."""
    cols = ["yhat", *(c for lv in LEVELS for c in (f"yhat_lo_{lv}", f"yhat_hi_{lv}"))]
    present = [c for c in cols if c in forecast.columns]
    merged = test[["unique_id", "ds"]].merge(
        forecast[["unique_id", "ds", *present]], on=["unique_id", "ds"], how="left"
    )
    renamed = {"yhat": name}
    for lv in LEVELS:
        renamed[f"yhat_lo_{lv}"] = f"{name}-lo-{lv}"
        renamed[f"yhat_hi_{lv}"] = f"{name}-hi-{lv}"
    return merged[present].rename(columns=renamed)


@dataclass
class SeriesScores:
    """Per-series scores of every method, so any half of the series can be summarised."""

    scores: pd.DataFrame  # unique_id, model, smape, mase, coverage_80, coverage_95
    failed: pd.DataFrame  # unique_id, model: series a method had no forecast for
    methods: list[str]


def series_scores(
    dataset: Dataset, forecasts: dict[str, pd.DataFrame | pd.Series], fill: pd.Series
) -> SeriesScores:
    """sMAPE, MASE and coverage per series and method; failed series get ``fill``."""
    wide = dataset.test.copy()
    failed = []
    for name, fc in forecasts.items():
        if isinstance(fc, pd.Series):
            wide[name] = fc.to_numpy()
        else:
            aligned = _align(dataset.test, fc, name)
            wide[aligned.columns] = aligned.to_numpy()
        missing = wide[name].isna()
        failed.append(pd.DataFrame({"unique_id": wide.loc[missing, "unique_id"].unique()}))
        failed[-1]["model"] = name
        wide.loc[missing, name] = fill[missing]
    metrics = [M.smape, M.mase, *(M.coverage(lv) for lv in LEVELS)]
    scale = dataset.history if dataset.scale_history is None else dataset.scale_history
    scores = M.evaluate(wide, metrics, list(forecasts), scale, dataset.mase_season)
    return SeriesScores(scores, pd.concat(failed, ignore_index=True), list(forecasts))


def score_table(scored: SeriesScores, ids: frozenset[str] | None = None) -> pd.DataFrame:
    """sMAPE, MASE, OWA vs Naive2 and coverage per method, over ``ids`` (all series if None)."""
    scores, failed = scored.scores, scored.failed
    if ids is not None:
        scores = scores[scores["unique_id"].isin(ids)]
        failed = failed[failed["unique_id"].isin(ids)]
    columns = ["smape", "mase", *(f"coverage_{lv}" for lv in LEVELS)]
    table = scores.groupby("model")[columns].mean()
    base = table.loc["Naive2"]
    table["owa"] = [
        M.owa(r["smape"], r["mase"], base["smape"], base["mase"]) for _, r in table.iterrows()
    ]
    table["failed_series"] = failed.groupby("model")["unique_id"].nunique()
    table["failed_series"] = table["failed_series"].fillna(0)
    return table.reindex(scored.methods)


SELECTION = "steadycast selection"


def split_rows(scored: SeriesScores, dataset: Dataset) -> tuple[pd.DataFrame, list[str]]:
    """The selection's row on the dev half, the test half and all series (the halves present),
    and the verdict on each: does the selection beat every single candidate there?"""
    present = frozenset(dataset.test["unique_id"].unique())
    halves = {"dev": present & dataset.dev, "test": present - dataset.dev}
    if all(halves.values()):  # both halves present: the whole too
        halves["all"] = present
    rows, verdicts = [], []
    singles = [m for m in scored.methods if m in set(candidate_names(dataset.config))]
    for half, ids in halves.items():
        if not ids:
            continue
        table = score_table(scored, ids)
        row = table.loc[SELECTION].rename(f"{SELECTION} [{half}, {len(ids)} series]")
        rows.append(row)
        best = table.loc[singles, "owa"].dropna()
        if best.empty:
            continue
        name, owa = str(best.idxmin()), float(best.min())
        beats = bool(row["owa"] < owa)
        verdicts.append(
            f"{half}: {'yes' if beats else 'NO'} (selection OWA {_fmt(row['owa'])}, best single "
            f"candidate {name} {_fmt(owa)})"
        )
    return pd.DataFrame(rows), verdicts


@dataclass
class Cost:
    """What the selection's whole path cost: wall seconds and CPU seconds of every process."""

    wall_s: float
    cpu_s: float  # the run process + its model workers (+ reaped children)
    series: int

    @property
    def cpu_per_series(self) -> float:
        return self.cpu_s / max(self.series, 1)


def _own_cpu_s() -> float:
    """CPU seconds of this process and of its reaped children (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _workers_cpu_s(runner: IsolatedRunner) -> dict[int, float]:
    """CPU seconds so far of each live model worker and its children, start-up included (they
    are not reaped while the runner lives, so RUSAGE_CHILDREN cannot see them; a worker that
    is replaced is reaped and counted there)."""
    spent = {}
    for pid in runner.worker_pids():
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        spent[pid] = t.user + t.system + t.children_user + t.children_system
    return spent


def _workers_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


_RESULT_FIELDS = ("forecasts", "provenance", "scores", "selection", "profile")


def run_dataset(
    dataset: Dataset, runner: IsolatedRunner
) -> tuple[SeriesScores, PartitionResult, float, Cost]:
    started, cpu0, workers0 = time.perf_counter(), _own_cpu_s(), _workers_cpu_s(runner)
    results = [
        run_partition(part.history, part.config, runner, covariates=covariates_of(part))
        for part in dataset.parts()
    ]
    result = PartitionResult(
        *(pd.concat([getattr(r, f) for r in results], ignore_index=True) for f in _RESULT_FIELDS)
    )
    cost = Cost(
        wall_s=time.perf_counter() - started,
        cpu_s=_own_cpu_s() - cpu0 + _workers_delta(workers0, _workers_cpu_s(runner)),
        series=dataset.history["unique_id"].nunique(),
    )
    singles = single_models(dataset, runner)
    elapsed = time.perf_counter() - started
    task = task_for(dataset.config)
    # Naive2's seasonal test uses the M4 frequency of the data (1 for weekly), as MASE does.
    scale = dataset.history if dataset.scale_history is None else dataset.scale_history
    own = naive2_forecasts(model_history(scale), task, dataset.mase_season)
    naive2_values = _align(dataset.test, own, "Naive2")["Naive2"]
    forecasts: dict[str, pd.DataFrame | pd.Series] = {SELECTION: result.forecasts}
    forecasts.update(singles)
    forecasts["Naive2"] = naive2_values
    for name, values in (dataset.extra or {}).items():
        forecasts[name] = values
    return series_scores(dataset, forecasts, naive2_values), result, elapsed, cost


# -- report -------------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 3) -> str:
    return "" if pd.isna(value) else f"{value:.{digits}f}"


def markdown_table(table: pd.DataFrame) -> str:
    lines = [
        "| method | sMAPE | MASE | OWA | cov 80 | cov 95 | series filled by Naive2 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in table.iterrows():
        lines.append(
            f"| {name} | {_fmt(row['smape'])} | {_fmt(row['mase'])} | {_fmt(row['owa'])} | "
            f"{_fmt(row['coverage_80'], 2)} | {_fmt(row['coverage_95'], 2)} | "
            f"{int(row['failed_series'])} |"
        )
    return "\n".join(lines)


def coverage_by_source(dataset: Dataset, result: PartitionResult) -> str:
    """Coverage of the selection's intervals, split by where the intervals came from."""
    merged = dataset.test.merge(result.forecasts, on=["unique_id", "ds"], how="inner")
    merged["interval_source"] = merged["unique_id"].map(
        result.provenance.set_index("unique_id")["interval_source"]
    )
    parts = []
    for source, rows in merged.groupby("interval_source"):
        cover = [
            float(rows["y"].between(rows[f"yhat_lo_{lv}"], rows[f"yhat_hi_{lv}"]).mean())
            for lv in LEVELS
        ]
        shown = " / ".join(f"{c:.2f}" for c in cover)
        parts.append(f"{source} ({rows['unique_id'].nunique()} series) {shown}")
    return "- coverage 80 / 95 by interval source: " + "; ".join(parts)


def cost_summary(before: dict[str, ModelUsage], after: dict[str, ModelUsage]) -> str:
    """Worker CPU seconds per model spent on this dataset."""
    parts = []
    for name, usage in sorted(after.items()):
        spent = usage.cpu_s - (before[name].cpu_s if name in before else 0.0)
        tasks = usage.tasks - (before[name].tasks if name in before else 0)
        if tasks:
            parts.append(f"{name} {spent:.0f} s ({tasks} tasks)")
    return "- model CPU in workers: " + ", ".join(parts)


def selection_summary(result: PartitionResult) -> str:
    prov = result.provenance
    chosen = prov["model"].where(~prov["model"].str.startswith("Ensemble("), "Ensemble(...)")
    counts = chosen.value_counts()
    sources = prov["source"].value_counts()
    intervals = prov["interval_source"].value_counts()
    parts = [
        "chosen: " + ", ".join(f"{m} {n}" for m, n in counts.items()),
        "source: " + ", ".join(f"{s} {n}" for s, n in sources.items()),
        "intervals: " + ", ".join(f"{s} {n}" for s, n in intervals.items()),
    ]
    failed = result.scores[result.scores["status"] == "failed"]
    if not failed.empty:
        per_model = failed.groupby("model")["unique_id"].nunique()
        parts.append(
            "backtest failures (series): " + ", ".join(f"{m} {n}" for m, n in per_model.items())
        )
    return "\n".join(f"- {p}" for p in parts)


def published_m4(data: Path) -> str:
    results = pd.read_csv(data / "m4" / "results" / "point_forecast_accuracy_by_frequency.csv")
    weekly = results[results["frequency"] == "Weekly"]
    wide = weekly.pivot_table(index="method_id", columns="metric", values="value")
    lines = [
        "| published M4 method | sMAPE | MASE | OWA |",
        "| --- | ---: | ---: | ---: |",
    ]
    for method_id, label in PUBLISHED_METHODS.items():
        if method_id in wide.index:
            row = wide.loc[method_id]
            lines.append(
                f"| {label} | {_fmt(row['sMAPE'])} | {_fmt(row['MASE'])} | {_fmt(row['OWA'])} |"
            )
    best = wide.sort_values("OWA").head(1)
    for method_id, row in best.iterrows():
        lines.append(
            f"| best Weekly OWA (id {method_id}) | {_fmt(row['sMAPE'])} | {_fmt(row['MASE'])} "
            f"| {_fmt(row['OWA'])} |"
        )
    return "\n".join(lines)


def naive2_reproduction(dataset: Dataset, bundled: pd.DataFrame) -> str:
    task = task_for(dataset.config)
    # M4 treats weekly data as m = 1, so Naive2 has no seasonal adjustment here.
    own = _align(dataset.test, naive2_forecasts(model_history(dataset.history), task, 1), "x")["x"]
    forecasts: dict[str, pd.DataFrame | pd.Series] = {
        "Naive2 (M4 organisers' file)": bundled.iloc[:, 0],
        "Naive2 (computed here)": own,
    }
    wide = dataset.test.copy()
    for name, values in forecasts.items():
        wide[name] = np.asarray(values)
    scores = M.evaluate(wide, [M.smape, M.mase], list(forecasts), dataset.history, 1)
    means = scores.groupby("model")[["smape", "mase"]].mean()
    lines = [
        "| Naive2 forecasts | sMAPE | MASE | published sMAPE | published MASE |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in forecasts:
        lines.append(
            f"| {name} | {_fmt(means.loc[name, 'smape'])} | {_fmt(means.loc[name, 'mase'])} "
            "| 9.161 | 2.777 |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a subset of every dataset")
    default_data = os.environ.get("STEADYCAST_DATA", str(REPO / ".." / "shared" / "data"))
    parser.add_argument("--data", default=default_data, help="the shared data directory")
    parser.add_argument("--out", help="write the markdown here instead of stdout")
    parser.add_argument("--workers", type=int, default=2, help="isolated model workers")
    parser.add_argument("--datasets", default="m4,gefcom,sgsc")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="all",
        help="dev: the development half only (tune on it); test: the other half; all: both, "
        "reported per half and together",
    )
    parser.add_argument(
        "--candidates",
        default="",
        help="comma-separated models to run instead of each frequency's default pool",
    )
    parser.add_argument(
        "--gefcom-weeks",
        type=int,
        default=12,
        help="weeks of history before each hidden GEFCom week (hourly: 12 weeks = 2016 points)",
    )
    parser.add_argument(
        "--holdout",
        action="store_true",
        help="GEFCom2012: the weeks a year after the hidden weeks instead of them (development)",
    )
    parser.add_argument(
        "--temperatures",
        action="store_true",
        help="GEFCom2012 with the actual temperatures as a declared covariate",
    )
    parser.add_argument(
        "--holidays",
        action="store_true",
        help="with --temperatures: the data set's holiday list as a second covariate (0/1)",
    )
    args = parser.parse_args(argv)
    CANDIDATES[:] = [c.strip() for c in args.candidates.split(",") if c.strip()]
    data = Path(args.data)
    chosen = [d.strip() for d in args.datasets.split(",") if d.strip()]
    if not (data / "m4").exists():
        print(f"no M4 data under {data}; pass --data or set STEADYCAST_DATA", file=sys.stderr)
        return 2
    mode = "quick subset" if args.quick else "full"
    mode += f", {args.split} split" if args.split != "all" else ""
    title = "Accuracy"
    if args.datasets != "m4,gefcom,sgsc":
        title += ": " + ", ".join(chosen)
        title += " with temperatures" if args.temperatures else ""
        title += " and holidays" if args.temperatures and args.holidays else ""
        title += f", {args.gefcom_weeks} weeks of history" if args.gefcom_weeks != 12 else ""
        title += ", the holdout weeks" if args.holdout else ""
    out = [f"## {title} ({mode})", ""]
    command = " ".join(["python bench/accuracy.py", *(argv if argv is not None else sys.argv[1:])])
    out += [f"Reproduce: `{command}`", ""]
    if "m4" in chosen:
        out += ["### M4 Weekly: Naive2 reproduction (proves the metric code, all 359 series)", ""]
        out += [naive2_reproduction(*m4_weekly(data, quick=False)), ""]
    m4, _ = m4_weekly(data, args.quick, args.split)
    builders = {
        "m4": lambda: m4,
        "gefcom": lambda: gefcom(
            data,
            args.quick,
            args.split,
            args.gefcom_weeks,
            args.temperatures,
            args.holdout,
            args.holidays,
        ),
        "sgsc": lambda: sgsc(data, args.quick, args.split),
        "hourly": lambda: hourly(args.quick, args.split),
    }
    cfg = m4.config.forecast
    with IsolatedRunner(args.workers, cfg.timeout_s, cfg.memory_mb) as runner:
        for key in chosen:
            dataset = builders[key]()
            print(f"running {dataset.name} ...", file=sys.stderr, flush=True)
            before = runner.usage()
            scored, result, seconds, cost = run_dataset(dataset, runner)
            n = dataset.history["unique_id"].nunique()
            out += [f"### {dataset.name}", "", f"{dataset.note}. {n} series; "]
            out[-1] += (
                f"selection and single models took {seconds:.0f} s wall with "
                f"{args.workers} workers. OWA against Naive2 computed here."
            )
            halves, verdicts = split_rows(scored, dataset)
            table = pd.concat([halves, score_table(scored).drop(index=SELECTION)])
            out += ["", markdown_table(table), ""]
            out += [
                f"- selection cost (backtest and forecast, run process and model workers): "
                f"{cost.cpu_s:.0f} CPU-s, {cost.cpu_per_series:.2f} CPU-s per series, "
                f"{cost.wall_s:.0f} s wall",
                "- selection beats every single candidate: " + "; ".join(verdicts),
                "- candidates: " + ", ".join(candidate_names(dataset.config)),
                selection_summary(result),
            ]
            out += [coverage_by_source(dataset, result), cost_summary(before, runner.usage()), ""]
            if key == "m4":
                out += ["Published M4 Weekly figures, for comparison:", "", published_m4(data), ""]
            if args.out:  # written after each dataset, so a long run shows results as it goes
                Path(args.out).write_text("\n".join(out) + "\n", encoding="utf-8")
    if not args.out:
        sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
