"""Selection settings compared on development data: how to combine, how many, how many windows.

    python bench/combinations.py [--data DIR] [--series 60] [--offset 0] [--cap 520]
                                 [--candidates A,B,...] [--out FILE.md]

On a sample of the development half of M4 Weekly (series at even 0-based positions of
Weekly-train.csv, every third of them from ``--offset``), each candidate (the default pool
unless ``--candidates``) is backtested once over 3 windows and fitted once on the whole history
(the last ``--cap`` points). The selection is then replayed from those stored forecasts under
every setting: 2 or 3 windows; ``mean``, ``median`` or ``trimmed``; the top 3, 4, 5 or 8; a
combination that ties with the best single model chosen or not. Each setting's published
forecast (its choice per series, falling back down the ranking as the forecast stage does when
a member has no forecast) is scored as bench/accuracy.py scores: OWA against Naive2, MASE with
m = 1 as in M4, beside every single candidate.

Tune on this half only; bench/accuracy.py reports the other. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import Dataset, _align, m4_weekly, naive2_forecasts, score_table, series_scores
from steadycast.forecasting.backtest import (
    BacktestResult,
    backtest,
    call_models,
    model_history,
    task_for,
)
from steadycast.forecasting.forecast import _capabilities
from steadycast.forecasting.profile import profile_series, route
from steadycast.forecasting.selection import combine, ensemble_combination, select
from steadycast.models.validation import validate_forecast

REPO = Path(__file__).resolve().parents[1]


def development_sample(data: Path, every: int, offset: int, cap: int) -> tuple[Dataset, Dataset]:
    """(full history, capped history) datasets of the sample; the test weeks are the same."""
    dataset, _ = m4_weekly(data, quick=False, split="dev")
    order = pd.read_csv(data / "m4" / "Weekly-train.csv", usecols=[0]).iloc[:, 0].tolist()
    keep = set(order[0::2][offset::every]) & dataset.dev
    history = dataset.history[dataset.history["unique_id"].isin(keep)].reset_index(drop=True)
    test = dataset.test[dataset.test["unique_id"].isin(keep)].reset_index(drop=True)
    capped = history.groupby("unique_id", group_keys=False).tail(cap).reset_index(drop=True)
    full = Dataset("M4 Weekly DEV", history, test, dataset.config, 1, "")
    return full, Dataset("M4 Weekly DEV", capped, test, dataset.config, 1, "")


def run_candidates(
    dataset: Dataset, candidates: Sequence[str]
) -> tuple[BacktestResult, dict[str, pd.DataFrame], dict[str, float]]:
    """Every candidate's 3-window backtest (one call per model) and final forecast, in-process."""
    cfg, history = dataset.config, dataset.history
    task = task_for(cfg)
    caps = _capabilities(cfg)
    profile = profile_series(history, task.season_length)
    routing = route(profile, candidates, caps, season_length=task.season_length)
    results, finals, cpu = [], {}, {}
    canonical = model_history(history)
    for model in candidates:
        started = time.process_time()
        mine = routing.assign(
            models=routing["models"].map(lambda ms, m=model: [x for x in ms if x == m])
        )
        params = dict(cfg.models.params.get(model, {}))
        results.append(
            backtest(history, mine, task, windows=3, capabilities=caps, params={model: params})
        )
        out = call_models([(model, params, canonical, task)], None)[0]
        finals[model] = (
            validate_forecast(out, canonical, task, model)[0]
            if not isinstance(out, Exception)
            else pd.DataFrame(columns=["unique_id", "ds", "yhat"])
        )
        cpu[model] = time.process_time() - started
    series = results[0].series.assign(models=[list(candidates)] * len(results[0].series))
    series["windows"] = np.max([r.series["windows"].to_numpy() for r in results], axis=0)
    merged = BacktestResult(
        scores=pd.concat([r.scores for r in results], ignore_index=True),
        forecasts=pd.concat([r.forecasts for r in results if len(r.forecasts)], ignore_index=True),
        series=series,
        horizon=results[0].horizon,
        season_length=results[0].season_length,
    )
    return merged, finals, cpu


def fewer_windows(result: BacktestResult, windows: int) -> BacktestResult:
    """The same backtest with only its newest ``windows`` origins (window 0 is the newest)."""
    return BacktestResult(
        scores=result.scores[result.scores["window"] < windows].reset_index(drop=True),
        forecasts=result.forecasts[result.forecasts["window"] < windows].reset_index(drop=True),
        series=result.series.assign(windows=result.series["windows"].clip(upper=windows)),
        horizon=result.horizon,
        season_length=result.season_length,
    )


def published(table: pd.DataFrame, finals: dict[str, pd.DataFrame], horizon: int) -> pd.DataFrame:
    """What the forecast stage would publish for a selection table, from the final forecasts."""
    by_series = {m: dict(tuple(f.groupby("unique_id", sort=False))) for m, f in finals.items()}
    rows = []
    for row in table.itertuples(index=False):
        uid = str(row.unique_id)
        chain = [(row.model, list(row.members)), *((m, [m]) for m in row.fallbacks)]
        for name, members in chain:
            parts = [by_series.get(m, {}).get(uid) for m in members]
            if all(p is not None and len(p) == horizon for p in parts):
                stacked = np.stack([p["yhat"].to_numpy(dtype=float) for p in parts])  # type: ignore[union-attr]
                values = combine(stacked, ensemble_combination(name))
                ds = parts[0]["ds"].to_numpy()  # type: ignore[index]
                rows.append(pd.DataFrame({"unique_id": uid, "ds": ds, "yhat": values}))
                break
    return pd.concat(rows, ignore_index=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--series", type=int, default=60, help="about this many DEV series")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--cap", type=int, default=520, help="points of history kept")
    parser.add_argument("--candidates", default="", help="comma-separated; default: the pool")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    every = max(1, 180 // args.series)  # M4 Weekly has 359 series, 180 at even positions
    full, capped = development_sample(args.data, every, args.offset, args.cap)
    candidates = args.candidates.split(",") if args.candidates else capped.config.models.candidates
    result, finals, cpu = run_candidates(capped, candidates)
    task = task_for(capped.config)
    forecasts: dict[str, pd.DataFrame | pd.Series] = {}
    share: dict[str, float] = {}
    for windows in (2, 3):
        bt = fewer_windows(result, windows)
        settings = [("single best", 0, "mean", False)] + [
            (f"{comb} top {k}, tie to {'combination' if tie else 'single'}", k, comb, tie)
            for comb, k, tie in itertools.product(
                ("mean", "median", "trimmed"), (3, 4, 5, 8), (True, False)
            )
        ]
        for label, k, comb, tie in settings:
            table = select(
                bt, capped.history, ensemble_top_k=k, combination=comb, ensemble_on_tie=tie
            ).table
            name = f"{windows} windows, {label}"
            forecasts[name] = published(table, finals, task.horizon)
            share[name] = float((table["source"] == "ensemble").mean())
    forecasts.update(finals)
    naive2 = _align(full.test, naive2_forecasts(model_history(full.history), task, 1), "Naive2")
    forecasts["Naive2"] = naive2["Naive2"]
    scored = score_table(series_scores(full, forecasts, naive2["Naive2"]))
    scored["combination chosen"] = pd.Series(share)
    lines = [
        f"M4 Weekly DEV: {full.test['unique_id'].nunique()} series (every {every}th at even "
        f"positions from {args.offset}), last {args.cap} points, candidates {', '.join(candidates)}",
        "CPU seconds per candidate (3 windows + forecast): "
        + ", ".join(f"{m} {s:.1f}" for m, s in cpu.items()),
        "",
        "| setting | sMAPE | MASE | OWA | combination chosen |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in scored.iterrows():
        chosen = "" if pd.isna(row["combination chosen"]) else f"{row['combination chosen']:.0%}"
        lines.append(
            f"| {name} | {row['smape']:.3f} | {row['mase']:.3f} | {row['owa']:.3f} | {chosen} |"
        )
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
