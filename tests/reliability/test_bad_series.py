"""Degenerate series for every built-in model: a finite forecast of the right length, or a
classified fallback whose reason is in the provenance.

Cases: constant, all zero, one point, two points, shorter than a season, all NaN, unevenly
spaced (on the grid, with holes), duplicate timestamps and timestamps off the grid. Each case
reaches the forecast stage the way it would in a run: the first seven as they are (the stage
documents how it treats NaN and holes), the last two through the real ingest, which quarantines
duplicate and misaligned rows (the stage's input has one row per series and time, on the grid);
what the stage does with them raw (it names the series and time) is
``test_prepare_rejects_raw_duplicate_and_off_grid_rows``.

Two layers per case, both through the real isolated runner:

- **forced**: each built-in model is made the chosen model of the series (no routing, no
  backtest), so every model really meets every case; when it fails, the forecast stage's
  fallback chain must take over and say why. This is the outcome matrix of the figure.
- **run**: the engine's unit of work (prepare, route, backtest, select, forecast) with every
  built-in as a candidate, as a pipeline run would do it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from steadycast.config import PipelineConfig, parse_pipeline
from steadycast.errors import DataError
from steadycast.forecasting.backtest import SCORE_COLUMNS, interval_columns, model_history, task_for
from steadycast.forecasting.forecast import forecast_partition
from steadycast.forecasting.prepare import regularize
from steadycast.forecasting.selection import TABLE_COLUMNS, Selection
from steadycast.ingestion.batch import ingest
from steadycast.models.isolation import IsolatedRunner
from steadycast.models.registry import builtin_models
from steadycast.models.validation import expected_timestamps
from steadycast.pipeline.run import forecast_one_partition
from steadycast.storage import store
from steadycast.workspace import Workspace
from tests.pipelines import pipeline_toml
from tests.reliability.conftest import Record, size

# (frequency, season length, horizon): the quick version runs the first, the long one all.
GRIDS = [("1h", 24, 12), ("1D", 7, 14), ("30min", 48, 24)]
START = pd.Timestamp("2024-01-01")
LEVELS = (80, 95)
THROUGH_INGEST = ("duplicate_timestamps", "off_grid_timestamps")


def config(frequency: str, season: int, horizon: int, candidates: list[str]) -> PipelineConfig:
    return parse_pipeline(
        {
            "source": {"id_column": "id", "time_column": "t", "value_column": "v"},
            "series": {
                "frequency": frequency,
                "horizon": horizon,
                "season_lengths": [season],
            },
            "models": {"candidates": candidates, "levels": list(LEVELS)},
            "backtest": {"windows": 2},
        },
        "bad",
        "bad.toml",
    )


def cases(frequency: str, season: int, seed: int) -> dict[str, pd.DataFrame]:
    """The degenerate series, in long format ``unique_id, ds, y`` (ids are the case names)."""
    rng = np.random.default_rng(seed)
    step = pd.tseries.frequencies.to_offset(frequency)
    n = 4 * season

    def frame(uid: str, y: Any, ds: Any = None) -> pd.DataFrame:
        values = np.asarray(y, dtype=float)
        stamps = pd.date_range(START, periods=len(values), freq=step) if ds is None else ds
        return pd.DataFrame({"unique_id": uid, "ds": pd.DatetimeIndex(stamps), "y": values})

    t = np.arange(n)
    wave = 10 + 3 * np.sin(2 * np.pi * t / season) + rng.normal(0, 0.3, n)
    grid = pd.date_range(START, periods=n, freq=step)
    holes = np.sort(rng.choice(n, size=n // 3, replace=False))
    holes = np.union1d(holes, np.arange(n // 4, n // 4 + season + 2))  # one long gap too
    kept = np.setdiff1d(np.arange(n), holes)
    dup_at = rng.choice(n, size=max(2, n // 20), replace=False)
    jitter = pd.to_timedelta(rng.integers(1, 59, n // 2), unit="min")
    off_grid = grid.to_numpy(copy=True)  # a copy: the grid itself stays on the grid
    off_grid[1::2] = (grid[1::2] + jitter[: len(grid[1::2])]).to_numpy()
    return {
        "constant": frame("constant", np.full(n, 7.5)),
        "all_zero": frame("all_zero", np.zeros(n)),
        "length_1": frame("length_1", [4.0]),
        "length_2": frame("length_2", [4.0, 5.0]),
        "shorter_than_season": frame("shorter_than_season", wave[: max(3, season // 2)]),
        "all_nan": frame("all_nan", np.full(n, np.nan)),
        "irregular_spacing": frame("irregular_spacing", wave[kept], grid[kept]),
        "duplicate_timestamps": pd.concat(
            [
                frame("duplicate_timestamps", wave),
                frame("duplicate_timestamps", wave[dup_at] + 1.0, grid[dup_at]),
            ],
            ignore_index=True,
        ),
        "off_grid_timestamps": frame("off_grid_timestamps", wave, off_grid),
    }


def stored_by_ingest(root: Path, raw: list[pd.DataFrame], frequency: str) -> pd.DataFrame:
    """Ingest ``raw`` for real and return what the store keeps (what a run's snapshot reads)."""
    ws = Workspace.init(root)
    (ws.pipelines_dir / "bad.toml").write_text(
        pipeline_toml(
            id_column="id",
            time_column="t",
            value_column="v",
            frequency=frequency,
            horizon=2,
            season_lengths=None,
            min_value=None,
        )
    )
    csv = root / "cases.csv"
    frame = pd.concat(raw, ignore_index=True)
    frame.rename(columns={"unique_id": "id", "ds": "t", "y": "v"}).assign(
        t=lambda f: f["t"].dt.strftime("%Y-%m-%d %H:%M:%S")
    ).to_csv(csv, index=False)
    (batch,) = ingest(ws, "bad", [csv])
    assert batch.rows_read == len(frame)
    assert batch.rows_stored + batch.rows_quarantined == batch.rows_read
    with store.reading(ws.store_path) as con:
        stored = con.execute(
            "SELECT unique_id, ds, y FROM observations WHERE pipeline = 'bad' ORDER BY unique_id, ds"
        ).fetchdf()
    stored["ds"] = stored["ds"].astype("datetime64[ns]")
    return stored


def forced_selection(ids: list[str], models: list[str]) -> Selection:
    """A selection that makes ``models[i]`` the chosen model of series ``ids[i]``."""
    table = pd.DataFrame(
        [
            {
                "unique_id": uid,
                "model": model,
                "source": "selected",
                "members": [model],
                "fallbacks": [],
                "metric": "mase",
                "score": np.nan,
                "windows": 0,
                "candidates": [model],
                "reason": f"{model}: chosen by the reliability test",
            }
            for uid, model in zip(ids, models, strict=True)
        ],
        columns=list(TABLE_COLUMNS),
    )
    return Selection(
        table=table,
        scores=pd.DataFrame(columns=[*SCORE_COLUMNS, "mase"]),
        forecasts=pd.DataFrame(),
        horizon=0,
        levels=LEVELS,
    )


def reason_class(text: str) -> str:
    """The first failure of a fallback reason, in a few words."""
    first = text.split("; ")[0]
    problem = first.split(" failed: ", 1)[-1]
    patterns = [
        (r"timed out", "timeout"),
        (r"killed by signal (\w+)", "signal {0}"),
        (r"exceeded memory", "memory"),
        (r"non-finite", "non-finite output"),
        (r"returned \d+ rows, expected", "wrong length"),
        (r"missing from the output", "series missing"),
        (r"off the forecast grid", "off-grid output"),
        (r"no observed values", "no observed values"),
        (r"could not fit any of \d+ series \((\w+)", "could not fit ({0})"),
        (r"raised (\w+)", "raised {0}"),
    ]
    for pattern, label in patterns:
        found = re.search(pattern, problem)
        if found:
            return label.format(*found.groups())
    return problem[:40]


def judge(
    result_forecasts: pd.DataFrame,
    provenance: pd.DataFrame,
    history: pd.DataFrame,
    frequency: str,
    horizon: int,
    forced: dict[str, str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Outcome per series and the promise violations of one forecast-stage result."""
    hist = model_history(history)
    observed = hist.dropna(subset=["y"])
    last = observed.groupby("unique_id")["ds"].max()
    task = task_for(config(frequency, 1, horizon, ["Naive"]))
    expected = expected_timestamps(last, task) if len(last) else pd.DataFrame(columns=["ds"])
    columns = ["yhat", *interval_columns(LEVELS)]
    outcomes: dict[str, str] = {}
    violations: list[str] = []
    for row in provenance.itertuples(index=False):
        uid = str(row.unique_id)
        rows = result_forecasts[result_forecasts["unique_id"] == uid]
        source, reason, model = str(row.source), str(row.fallback_reason or ""), str(row.model)
        if source == "none":
            outcomes[uid] = f"none:{reason_class(reason)}"
            if not reason:
                violations.append(f"{uid}: no forecast and no reason")
            if uid in last.index:  # it has data: SeasonalNaive or Naive must have worked
                violations.append(f"{uid}: no forecast although it has observations ({reason})")
            continue
        want = expected[expected["unique_id"] == uid]["ds"].reset_index(drop=True)
        got = rows.sort_values("ds")["ds"].reset_index(drop=True)
        if len(got) != horizon or not got.equals(want):
            violations.append(f"{uid}: {len(got)} forecast rows, not the {horizon} steps after")
        values = rows[columns].to_numpy(dtype=float)
        if not np.isfinite(values).all():
            violations.append(f"{uid}: non-finite values in the forecast ({model})")
        if source == "fallback":
            outcomes[uid] = f"fallback:{model}:{reason_class(reason)}"
            if not reason:
                violations.append(f"{uid}: fallback to {model} without a reason")
        elif forced is not None and model != forced[uid]:
            violations.append(f"{uid}: {source} {model}, not the forced {forced[uid]}")
        else:
            outcomes[uid] = "forecast" if forced is not None else f"forecast:{model}"
    missing = set(history["unique_id"].astype(str)) - set(provenance["unique_id"].astype(str))
    violations += [f"{uid}: no provenance row" for uid in sorted(missing)]
    return outcomes, violations


@pytest.fixture(scope="module")
def runner() -> Iterator[IsolatedRunner]:
    with IsolatedRunner(workers=2, timeout_s=60, memory_mb=2048) as pool:
        yield pool


def test_every_builtin_on_degenerate_series_forecasts_or_falls_back(
    tmp_path: Path, runner: IsolatedRunner, figure: Record
) -> None:
    models = sorted(builtin_models())
    variants = size(1, len(GRIDS), env="STEADYCAST_BAD_SERIES_GRIDS")
    matrix: dict[str, dict[str, str]] = {m: {} for m in models}
    run_outcomes: dict[str, str] = {}
    violations: list[str] = []
    finished = False
    try:
        for frequency, season, horizon in GRIDS[:variants]:
            grid = f"{frequency}/{season}"
            raw = cases(frequency, season, seed=season)
            stored = stored_by_ingest(
                tmp_path / grid.replace("/", "-"), [raw[c] for c in THROUGH_INGEST], frequency
            )
            cfg = config(frequency, season, horizon, models)
            for case, frame in raw.items():
                history = stored[stored["unique_id"] == case] if case in THROUGH_INGEST else frame
                assert not history["ds"].duplicated().any(), f"{case}: the case itself is wrong"
                label = case if variants == 1 else f"{case}@{grid}"
                if history.empty:
                    run_outcomes[label] = "quarantined at ingest"
                    for model in models:
                        matrix[model][label] = "quarantined at ingest"
                    continue
                prepared, _ = regularize(history, frequency, max_fill=max(horizon, season))

                # Forced: one copy of the series per model, each model the choice of its own
                # copy, so each model's job holds this case only and the outcome is its own.
                copies = pd.concat(
                    [prepared.assign(unique_id=m) for m in models], ignore_index=True
                )
                out = forecast_partition(copies, cfg, runner, forced_selection(models, models))
                forced = dict(zip(models, models, strict=True))
                outcomes, problems = judge(
                    out.forecasts, out.provenance, copies, frequency, horizon, forced
                )
                violations += [f"forced {label}: {p}" for p in problems]
                for model in models:
                    matrix[model][label] = outcomes.get(model, "missing")

                # Run: the engine's unit of work with every built-in as a candidate.
                result, _ = forecast_one_partition(history, cfg, runner, None)
                outcomes, problems = judge(
                    result.forecasts, result.provenance, prepared, frequency, horizon
                )
                violations += [f"run {label}: {p}" for p in problems]
                run_outcomes[label] = outcomes.get(case, "missing")
        finished = True
    finally:
        # Recorded even when the stage raised (the test then fails with the traceback).
        cells = [v for row in matrix.values() for v in row.values()]
        counts: dict[str, int] = {}
        for cell in cells:
            kind = cell.split(":")[0]
            counts[kind] = counts.get(kind, 0) + 1
        total = len(violations) + (0 if finished else 1)
        figure(
            "bad-series",
            violations=total,
            value=(
                f"{len(models)} models x {len(cells) // max(1, len(models))} cases: "
                + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
                + f"; {total} violations"
                + ("" if finished else " (the stage raised)")
            ),
            matrix=matrix,
            run_with_all_candidates=run_outcomes,
            grids=[f"{f}/{s}/h{h}" for f, s, h in GRIDS[:variants]],
            violations_list=violations[:50],
        )
    assert not violations, violations[:20]


@pytest.mark.parametrize("case", THROUGH_INGEST)
def test_prepare_rejects_raw_duplicate_and_off_grid_rows(case: str) -> None:
    """Promise 7: the stage names the series and the first offending time, on the vectorised
    path and on the series-by-series one (a calendar frequency)."""
    frame = cases("1h", 24, seed=24)[case]
    problem = "two rows at" if case == "duplicate_timestamps" else "is not on the 1h grid"
    with pytest.raises(DataError, match=rf"series '{case}': .*{problem}"):
        regularize(frame, "1h", max_fill=24)
    months = list(pd.date_range("2024-01-01", periods=6, freq="MS"))
    months[3] = months[2] if case == "duplicate_timestamps" else months[3] + pd.Timedelta(days=9)
    monthly = pd.DataFrame({"unique_id": case, "ds": months, "y": np.arange(6.0)})
    with pytest.raises(DataError, match=rf"series '{case}': .*{problem.replace('1h', 'MS')}"):
        regularize(monthly, "MS", max_fill=24)
