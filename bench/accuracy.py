"""Accuracy benchmark: steadycast's per-series selection against baselines on real data.

    python bench/accuracy.py [--quick] [--data DIR] [--out FILE.md] [--workers N]
                             [--datasets m4,gefcom,sgsc]

1. Proves the metric code by reproducing the published M4 Weekly Naive2 figures (sMAPE 9.161,
   MASE 2.777) from the organisers' own Naive2 forecasts and from our Naive2.
2. Runs ``run_partition`` (profile, route, backtest, select, forecast, with the default
   candidates and the isolated runner) on
   - M4 Weekly: 359 series, h = 13, season 52 (M4 scores weekly MASE with m = 1, so that is
     used for the published comparison);
   - GEFCom2012 load: the 20 zones on the 8 hidden backcast weeks, each forecast from the
     weeks before it (h = 168 hours, seasons 24 and 168; earlier gap weeks are filled with their
     published truth, which lies in the past of the origin);
   - SGSC smart meters: each household's last week (h = 336 half-hours, seasons 48 and 336).
   and scores the selection and each single candidate on the held-out data: sMAPE, MASE, OWA
   against Naive2, coverage of the 80% and 95% intervals.

The data directory defaults to ``../shared/data`` next to the repository (``--data`` or
``STEADYCAST_DATA`` override it). Not part of the test suite; writes markdown to stdout or
``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from steadycast.config import PipelineConfig, parse_pipeline
from steadycast.forecasting import metrics as M
from steadycast.forecasting.backtest import Runner, call_models, model_history, task_for
from steadycast.forecasting.forecast import PartitionResult, run_partition
from steadycast.models.base import ForecastTask
from steadycast.models.isolation import IsolatedRunner, ModelUsage
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


def _config(frequency: str, horizon: int, seasons: list[int]) -> PipelineConfig:
    return parse_pipeline(
        {
            "source": {},
            "series": {"frequency": frequency, "horizon": horizon, "season_lengths": seasons},
            "forecast": {"timeout_s": 3600, "memory_mb": 4096},
            "models": {"plugins": False},  # the built-in default candidates only
        },
        "bench",
        "bench/accuracy.py",
    )


def _m4_long(path: Path) -> pd.DataFrame:
    wide = pd.read_csv(path).rename(columns={"V1": "unique_id"})
    long = wide.melt(id_vars="unique_id", var_name="col", value_name="y").dropna()
    long["i"] = long["col"].str[1:].astype(int) - 2  # V2 holds the first value
    return long.drop(columns="col").sort_values(["unique_id", "i"]).reset_index(drop=True)


def m4_weekly(data: Path, quick: bool) -> tuple[Dataset, pd.DataFrame]:
    """M4 Weekly with made-up Sunday dates (M4 gives none; every series ends 2017-12-31)."""
    train = _m4_long(data / "m4" / "Weekly-train.csv")
    test = _m4_long(data / "m4" / "Weekly-test.csv")
    if quick:
        keep = sorted(train["unique_id"].unique(), key=lambda s: int(s[1:]))[::6]
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
        note="359 series (every 6th in --quick), h=13, season 52; MASE with m=1 as in M4",
    )
    return dataset, pd.DataFrame({"Naive2 (M4 organisers' file)": bundled.to_numpy()})


def _gefcom_long(frame: pd.DataFrame) -> pd.DataFrame:
    hours = [f"h{k}" for k in range(1, 25)]
    long = frame.melt(id_vars=["zone_id", "year", "month", "day"], value_vars=hours, var_name="h")
    date = pd.to_datetime(long[["year", "month", "day"]])
    long["ds"] = date + pd.to_timedelta(long["h"].str[1:].astype(int), unit="h")
    long = long.rename(columns={"value": "y"})
    return long[["zone_id", "ds", "y"]].sort_values(["zone_id", "ds"]).reset_index(drop=True)


def gefcom(data: Path, quick: bool) -> Dataset:
    """Each zone x backcast week is one series: the 12 weeks before the gap, then the gap."""
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
    if quick:
        zones, weeks = zones[::5], weeks[::4]
    span = pd.Timedelta(weeks=12)
    parts, tests, benches = [], [], []
    for week in weeks:
        first = week + pd.Timedelta(hours=1)  # h1 of the gap's first day
        last = first + pd.Timedelta(hours=167)
        for zone in zones:
            uid = f"z{zone:02d}@{week.date()}"
            rows = full[full["zone_id"] == zone]
            past = rows[(rows["ds"] < first) & (rows["ds"] >= first - span)]
            parts.append(past.assign(unique_id=uid))
            gap = truth[(truth["zone_id"] == zone) & truth["ds"].between(first, last)]
            tests.append(gap.assign(unique_id=uid))
            b = bench[(bench["zone_id"] == zone) & bench["ds"].between(first, last)]
            benches.append(b.assign(unique_id=uid))
    columns = ["unique_id", "ds", "y"]
    test = pd.concat(tests)[columns].reset_index(drop=True)
    organisers = pd.concat(benches)[columns].rename(columns={"y": "yhat"})
    aligned = test.merge(organisers, on=["unique_id", "ds"], how="left")["yhat"]
    return Dataset(
        name="GEFCom2012 load (backcast weeks)",
        history=pd.concat(parts)[columns].reset_index(drop=True),
        test=test,
        config=_config("h", 168, [24, 168]),
        mase_season=24,
        note=f"{len(zones)} zones x {len(weeks)} hidden weeks, 12 weeks of history each, "
        "h=168, seasons 24 and 168; MASE with m=24",
        extra={"GEFCom organisers' benchmark (uses actual temperatures)": aligned},
    )


def sgsc(data: Path, quick: bool) -> Dataset:
    """Each household's last week held out; 8 weeks of history regularised to 30 min."""
    raw = pd.read_csv(
        data / "sgsc_smart_meter_50" / "sm_cust50.csv.gz",
        usecols=["customer_id", "reading_datetime", "general_supply_kwh"],
        dtype={"customer_id": str},
        parse_dates=["reading_datetime"],
    )
    raw.columns = ["unique_id", "ds", "y"]
    ids = sorted(raw["unique_id"].unique())
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
    )


# -- scoring ------------------------------------------------------------------------------------


def single_models(dataset: Dataset, runner: Runner) -> dict[str, pd.DataFrame]:
    """Each candidate alone on every series: one call per model, validated."""
    task = task_for(dataset.config)
    history = model_history(dataset.history)
    candidates = list(dataset.config.models.candidates)
    jobs = [(m, dict(dataset.config.models.params.get(m, {})), history, task) for m in candidates]
    out: dict[str, pd.DataFrame] = {}
    for name, result in zip(candidates, call_models(jobs, runner), strict=True):
        if isinstance(result, Exception):
            out[name] = pd.DataFrame(columns=["unique_id", "ds", "yhat"])
            continue
        valid, _ = validate_forecast(result, history, task, name)
        out[name] = valid
    return out


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


def score_table(
    dataset: Dataset, forecasts: dict[str, pd.DataFrame | pd.Series], fill: pd.Series
) -> pd.DataFrame:
    """sMAPE, MASE, OWA vs Naive2 and coverage per method; failed series get ``fill``."""
    wide = dataset.test.copy()
    failed: dict[str, int] = {}
    for name, fc in forecasts.items():
        if isinstance(fc, pd.Series):
            wide[name] = fc.to_numpy()
        else:
            aligned = _align(dataset.test, fc, name)
            wide[aligned.columns] = aligned.to_numpy()
        missing = wide[name].isna()
        failed[name] = int(wide.loc[missing, "unique_id"].nunique())
        wide.loc[missing, name] = fill[missing]
    metrics = [M.smape, M.mase, *(M.coverage(lv) for lv in LEVELS)]
    scores = M.evaluate(wide, metrics, list(forecasts), dataset.history, dataset.mase_season)
    table = scores.groupby("model")[[M.metric_name(m) for m in metrics]].mean()
    base = table.loc["Naive2"]
    table["owa"] = [
        M.owa(r["smape"], r["mase"], base["smape"], base["mase"]) for _, r in table.iterrows()
    ]
    table["failed_series"] = pd.Series(failed)
    return table.reindex(list(forecasts))


def run_dataset(dataset: Dataset, runner: Runner) -> tuple[pd.DataFrame, PartitionResult, float]:
    started = time.perf_counter()
    result = run_partition(dataset.history, dataset.config, runner)
    singles = single_models(dataset, runner)
    elapsed = time.perf_counter() - started
    task = task_for(dataset.config)
    # Naive2's seasonal test uses the M4 frequency of the data (1 for weekly), as MASE does.
    own = naive2_forecasts(model_history(dataset.history), task, dataset.mase_season)
    naive2_values = _align(dataset.test, own, "Naive2")["Naive2"]
    forecasts: dict[str, pd.DataFrame | pd.Series] = {"steadycast selection": result.forecasts}
    forecasts.update(singles)
    forecasts["Naive2"] = naive2_values
    for name, values in (dataset.extra or {}).items():
        forecasts[name] = values
    table = score_table(dataset, forecasts, naive2_values)
    return table, result, elapsed


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
    args = parser.parse_args(argv)
    data = Path(args.data)
    chosen = [d.strip() for d in args.datasets.split(",") if d.strip()]
    if not (data / "m4").exists():
        print(f"no M4 data under {data}; pass --data or set STEADYCAST_DATA", file=sys.stderr)
        return 2
    mode = "quick subset" if args.quick else "full"
    out = [f"## Accuracy ({mode})", ""]
    out += ["### M4 Weekly: Naive2 reproduction (proves the metric code, all 359 series)", ""]
    out += [naive2_reproduction(*m4_weekly(data, quick=False)), ""]
    m4, _ = m4_weekly(data, args.quick)
    builders = {"m4": lambda: m4, "gefcom": lambda: gefcom(data, args.quick)}
    builders["sgsc"] = lambda: sgsc(data, args.quick)
    cfg = m4.config.forecast
    with IsolatedRunner(args.workers, cfg.timeout_s, cfg.memory_mb) as runner:
        for key in chosen:
            dataset = builders[key]()
            print(f"running {dataset.name} ...", file=sys.stderr, flush=True)
            before = runner.usage()
            table, result, seconds = run_dataset(dataset, runner)
            n = dataset.history["unique_id"].nunique()
            out += [f"### {dataset.name}", "", f"{dataset.note}. {n} series; "]
            out[-1] += (
                f"selection and single models took {seconds:.0f} s wall with "
                f"{args.workers} workers. OWA against Naive2 computed here."
            )
            out += ["", markdown_table(table), "", selection_summary(result)]
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
