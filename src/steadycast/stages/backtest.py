"""Rolling-origin backtest of the routed candidate models over one partition of series.

For each series the last ``windows`` origins are taken, ``step`` apart (0 means one horizon);
at each origin a model is fitted on the history before it and scored on the next ``horizon``
points. Window 0 is the most recent origin, window 1 the one before, and so on, so window 0
exists for every backtested series even when short series get fewer windows.

Models are vectorised over series (and global models need the whole batch), so each model is
called once per window with every series routed to it (slow models in chunks, see
:func:`batches`), through the isolated runner when one is given. A model that crashes, times out or returns an invalid forecast is recorded as
``failed`` for the series concerned; the backtest itself never fails because of a model.

Every score is kept (``BacktestResult.scores``), together with the window forecasts they come
from (``BacktestResult.forecasts``), so selection can build ensembles and intervals from them
without refitting and a person can see why a model was chosen.

Plain functions on pandas frames, no I/O and no global state: the same code runs in a local
process pool and inside Spark's ``applyInPandas``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import pandas as pd

from steadycast.config import PipelineConfig
from steadycast.errors import ModelError
from steadycast.metrics import DEFAULT_METRICS, Metric, coverage, evaluate, metric_name
from steadycast.models.base import Capabilities, ForecastTask
from steadycast.models.validation import to_naive_utc
from steadycast.profiling import SAFE_MODELS

__all__ = [
    "FULL_COST_BATCH",
    "ID",
    "SCORE_COLUMNS",
    "BacktestResult",
    "Job",
    "Runner",
    "backtest",
    "batches",
    "call_models",
    "interval_columns",
    "min_train_length",
    "model_history",
    "model_task_for",
    "task_for",
    "wide_for_metrics",
]

ID, DS, Y = "unique_id", "ds", "y"

Job = tuple[str, dict[str, Any], pd.DataFrame, ForecastTask]

# Series per job for models declaring cost="full" (see ``batches``).
FULL_COST_BATCH = 50

# Columns of ``BacktestResult.scores`` before the metric columns.
SCORE_COLUMNS = ("unique_id", "model", "window", "cutoff", "status", "reason")


class Runner(Protocol):
    """What backtest and forecast need from ``steadycast.models.isolation.IsolatedRunner``."""

    def map(self, jobs: Iterable[Job]) -> Iterator[pd.DataFrame | ModelError]: ...


@dataclass(frozen=True)
class BacktestResult:
    """Everything a backtest produced.

    ``scores``: one row per series x model x window with ``status`` ok / failed / skipped, a
    ``reason`` for the latter two, ``cutoff`` (last time seen by the model) and one column
    per metric (``mase``, ``smape``, ``rmsse``, ``coverage_L``).
    ``forecasts``: the window forecasts that were scored: ``unique_id, model, window,
    cutoff, ds, step, y, yhat`` and ``yhat_lo_L, yhat_hi_L`` where the model gave intervals.
    ``series``: ``unique_id, windows, models, note``: the windows each series got, the models
    that were backtested on it and why any were not.
    """

    scores: pd.DataFrame
    forecasts: pd.DataFrame
    series: pd.DataFrame
    horizon: int
    season_length: int


def task_for(config: PipelineConfig) -> ForecastTask:
    """The forecasting task a pipeline configuration describes."""
    return ForecastTask(
        horizon=config.series.horizon,
        frequency=config.series.frequency,
        season_length=config.series.season_length,
        season_lengths=tuple(config.series.season_lengths),
        levels=tuple(config.models.levels),
    )


def interval_columns(levels: Sequence[int]) -> list[str]:
    """``yhat_lo_L, yhat_hi_L`` for each level, in the order of the export contract."""
    return [col for lv in levels for col in (f"yhat_lo_{lv}", f"yhat_hi_{lv}")]


def min_train_length(horizon: int) -> int:
    """Points a backtest window must leave for fitting: one horizon, and at least 2.

    A model asked to forecast further ahead than the history it has seen tells us little, and
    the MASE scale needs two points.
    """
    return max(horizon, 2)


def model_history(
    history: pd.DataFrame,
    *,
    id_col: str = ID,
    time_col: str = DS,
    target_col: str = Y,
) -> pd.DataFrame:
    """The history models receive: ``unique_id, ds, y`` sorted, with no missing values.

    The prepare stage regularises and fills gaps; anything still missing here is handled so a
    model never sees NaN: leading and trailing NaN are dropped (a ragged start or end is not a
    gap), interior NaN are filled by linear interpolation, and series with no value at all are
    left out (the forecast stage reports them).
    """
    data = history[[id_col, time_col, target_col]].rename(
        columns={id_col: ID, time_col: DS, target_col: Y}
    )
    # Canonical types, the ones validate_forecast returns: str ids, naive UTC timestamps.
    data[ID] = data[ID].astype(str)
    data[DS] = to_naive_utc(data[DS])
    data = data.sort_values([ID, DS], kind="stable").reset_index(drop=True)
    data[Y] = data[Y].astype("float64")
    if not data[Y].isna().any():
        return data
    observed = data[Y].notna()
    seen_before = observed.groupby(data[ID]).cummax()
    seen_after = observed[::-1].groupby(data[ID][::-1]).cummax()[::-1]
    data = data[seen_before & seen_after].reset_index(drop=True)
    data[Y] = data.groupby(ID, sort=False)[Y].transform(
        lambda s: s.interpolate(method="linear", limit_area="inside")
    )
    return data


def _run_inline(job: Job) -> pd.DataFrame | ModelError:
    """Call a model in this process: the error boundary when no isolated runner is given."""
    from steadycast.models.registry import create_model

    name, params, history, task = job
    try:
        # Model chatter is not an error (an isolated worker would not raise it either); the
        # platform judges the validated output and the backtest score.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return create_model(name, params).forecast(history, task)
    except ModelError as exc:
        return exc
    except Exception as exc:  # the boundary around model code: any failure is the model's
        error = ModelError(name, f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error


def call_models(jobs: Sequence[Job], runner: Runner | None) -> list[pd.DataFrame | ModelError]:
    """Run model jobs through ``runner`` (isolated, in order) or in-process when it is None."""
    if not jobs:
        return []
    if runner is None:
        return [_run_inline(job) for job in jobs]
    return list(runner.map(jobs))


def batches(ids: Sequence[Any], capabilities: Capabilities | None) -> list[list[Any]]:
    """Split the series of one model call into jobs.

    Slow per-series models (``cost="full"``) are called on chunks of ``FULL_COST_BATCH``
    series: a job must finish within the runner's time limit (a 500-series partition of
    AutoETS at 1-3 s a series would not), chunks spread over the workers, and a crash costs
    one chunk, not the partition. Fast and global models get the whole batch (a global model
    learns from all of it).
    """
    if not ids:
        return []
    if capabilities is None or capabilities.global_model or capabilities.cost != "full":
        return [list(ids)]
    return [list(ids[i : i + FULL_COST_BATCH]) for i in range(0, len(ids), FULL_COST_BATCH)]


def model_task_for(task: ForecastTask, capabilities: Capabilities | None) -> ForecastTask:
    """Ask for intervals only from models that declare them."""
    if capabilities is not None and capabilities.intervals:
        return task
    return replace(task, levels=())


def _plan(
    lengths: pd.Series,
    routing: pd.DataFrame,
    capabilities: Mapping[str, Capabilities],
    horizon: int,
    windows: int,
    step: int,
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Windows per series, and the (series, model) pairs to backtest or skip."""
    min_train = min_train_length(horizon)
    fits = ((lengths - horizon - min_train) // step + 1).clip(lower=0, upper=windows)
    fits = fits.where(lengths >= horizon + min_train, 0).astype(int)
    series = pd.DataFrame({ID: lengths.index, "windows": fits.to_numpy()})
    routed = routing.assign(**{ID: routing[ID].astype(str)}).set_index(ID)["models"]
    routed = routed.reindex(lengths.index)
    skipped: list[dict[str, Any]] = []
    pairs: list[tuple[Any, str]] = []
    models_col: list[list[str]] = []
    notes: list[str] = []
    for uid, n, n_windows, models in zip(
        lengths.index, lengths.to_numpy(), fits.to_numpy(), routed.to_numpy(), strict=True
    ):
        models = list(models) if isinstance(models, list | tuple) else list(SAFE_MODELS[:1])
        if n_windows == 0:
            simple = [m for m in models if m in SAFE_MODELS] or [
                m for m in SAFE_MODELS if m in capabilities
            ]
            models_col.append(simple or list(SAFE_MODELS[:1]))
            notes.append(
                f"too short to backtest: {n} point{'' if n == 1 else 's'}, one window needs "
                f"{horizon + min_train}"
                f" ({horizon} to score, {min_train} to fit); simple models only"
            )
            continue
        first_train = n - horizon - (n_windows - 1) * step
        kept: list[str] = []
        for model in models:
            need = capabilities[model].min_history if model in capabilities else 1
            if need > first_train:
                skipped.append(
                    {
                        ID: uid,
                        "model": model,
                        "reason": f"needs {need} points, the first backtest window has "
                        f"{first_train}",
                    }
                )
            else:
                kept.append(model)
                pairs.append((uid, model))
        models_col.append(kept)
        note = "" if n_windows == windows else f"{n_windows} of {windows} windows ({n} points)"
        notes.append(note)
    series["models"] = models_col
    series["note"] = notes
    pair_frame = pd.DataFrame(pairs, columns=[ID, "model"])
    return series, pair_frame, skipped


def backtest(
    history: pd.DataFrame,
    routing: pd.DataFrame,
    task: ForecastTask,
    *,
    windows: int,
    step: int = 0,
    runner: Runner | None = None,
    capabilities: Mapping[str, Capabilities] | None = None,
    params: Mapping[str, dict[str, Any]] | None = None,
    metrics: Sequence[Metric] | None = None,
) -> BacktestResult:
    """Rolling-origin cross-validation of each series' routed models.

    Args:
        history: long frame ``unique_id, ds, y`` (other columns are ignored).
        routing: ``unique_id, models`` from :func:`steadycast.profiling.route`.
        task: horizon, frequency, season lengths and interval levels.
        windows: origins per series; short series get fewer (at least one horizon must be left
            to fit on, see :func:`min_train_length`), and series too short for one window get
            no backtest and only the simple models (``series.note`` says so).
        step: points between origins; 0 means one horizon (non-overlapping windows).
        runner: isolated runner; None calls models in this process.
        capabilities: per model name; models missing here are assumed to need one point.
        params: model parameters by model name.
        metrics: defaults to MASE, sMAPE, RMSSE and coverage at each of ``task.levels``.
    """
    horizon = task.horizon
    step = step or horizon
    capabilities = dict(capabilities or {})
    params = dict(params or {})
    metrics = list(metrics) if metrics is not None else _default_metrics(task.levels)
    hist = model_history(history)
    lengths = hist.groupby(ID, sort=True).size()
    series, pairs, skipped = _plan(lengths, routing, capabilities, horizon, windows, step)

    size = hist.groupby(ID, sort=False)[Y].transform("size").to_numpy()
    from_end = size - 1 - hist.groupby(ID, sort=False).cumcount().to_numpy()
    n_windows = hist[ID].map(series.set_index(ID)["windows"]).to_numpy()

    jobs: list[Job] = []
    keys: list[tuple[str, int, pd.Index]] = []
    tests: list[pd.DataFrame] = []
    for window in range(int(series["windows"].max()) if len(series) else 0):
        offset = window * step
        active = n_windows > window
        train = hist[active & (from_end >= horizon + offset)]
        test = hist[active & (from_end >= offset) & (from_end < horizon + offset)]
        cutoffs = train.groupby(ID, sort=False)[DS].max().rename("cutoff")
        test = test.merge(cutoffs, left_on=ID, right_index=True).assign(window=window)
        tests.append(test)
        in_window = set(series.loc[series["windows"] > window, ID])
        for model, group in pairs.groupby("model", sort=True):
            name = str(model)
            ids = [u for u in group[ID] if u in in_window]
            model_task = model_task_for(task, capabilities.get(name))
            for chunk in batches(ids, capabilities.get(name)):
                batch = train[train[ID].isin(chunk)].reset_index(drop=True)
                jobs.append((name, dict(params.get(name, {})), batch, model_task))
                keys.append((name, window, pd.Index(chunk)))

    outputs = call_models(jobs, runner)
    forecasts, failures = _collect(jobs, keys, outputs, task.levels)
    actuals = pd.concat(tests, ignore_index=True) if tests else _empty_actuals()
    forecasts, misaligned = _align(forecasts, actuals, horizon)
    failures.extend(misaligned)
    scores = _score(forecasts, hist, metrics, task)
    scores = _with_failures(scores, failures, skipped, actuals, metrics)
    return BacktestResult(
        scores=scores,
        forecasts=forecasts,
        series=series,
        horizon=horizon,
        season_length=task.season_length,
    )


def _default_metrics(levels: Sequence[int]) -> list[Metric]:
    return [*DEFAULT_METRICS, *(coverage(level) for level in levels)]


def _empty_actuals() -> pd.DataFrame:
    return pd.DataFrame({ID: [], DS: [], Y: [], "cutoff": [], "window": []})


def _empty_forecasts() -> pd.DataFrame:
    """Window forecasts with no rows and the usual columns and dtypes."""
    return pd.DataFrame(
        {
            ID: pd.Series(dtype=object),
            "model": pd.Series(dtype=object),
            "window": pd.Series(dtype=int),
            "cutoff": pd.Series(dtype="datetime64[ns]"),
            DS: pd.Series(dtype="datetime64[ns]"),
            "step": pd.Series(dtype=int),
            Y: pd.Series(dtype=float),
            "yhat": pd.Series(dtype=float),
        }
    )


def _collect(
    jobs: Sequence[Job],
    keys: Sequence[tuple[str, int, pd.Index]],
    outputs: Sequence[pd.DataFrame | ModelError],
    levels: Sequence[int],
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Validate each model's output; keep valid rows, turn everything else into failures."""
    from steadycast.models.validation import validate_forecast

    frames: list[pd.DataFrame] = []
    failures: list[dict[str, Any]] = []
    wanted = ["yhat", *interval_columns(levels)]
    for (name, _params, batch, task), (model, window, ids), output in zip(
        jobs, keys, outputs, strict=True
    ):
        if isinstance(output, ModelError):
            failures.extend(
                {ID: uid, "model": model, "window": window, "reason": output.problem} for uid in ids
            )
            continue
        valid, bad = validate_forecast(output, batch, task, name)
        for uid, reason in bad.items():
            failures.append({ID: uid, "model": model, "window": window, "reason": str(reason)})
        missing = set(ids) - set(valid[ID]) - set(bad)
        failures.extend(
            {ID: uid, "model": model, "window": window, "reason": "no forecast returned"}
            for uid in missing
        )
        columns = [ID, DS, *(c for c in wanted if c in valid.columns)]
        frames.append(valid[columns].assign(model=model, window=window))
    if not frames:
        return _empty_forecasts(), failures
    return pd.concat(frames, ignore_index=True), failures


def _align(
    forecasts: pd.DataFrame, actuals: pd.DataFrame, horizon: int
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Join window forecasts to the held-out actuals; a forecast missing a step is a failure."""
    if forecasts.empty:
        return _empty_forecasts(), []
    merged = forecasts.merge(actuals[[ID, DS, Y, "cutoff", "window"]], on=[ID, DS, "window"])
    counts = merged.groupby([ID, "model", "window"], sort=False).size()
    expected = forecasts.groupby([ID, "model", "window"], sort=False).size()
    short = expected.index[counts.reindex(expected.index).fillna(0).to_numpy() < horizon]
    failures = [
        {
            ID: uid,
            "model": model,
            "window": window,
            "reason": "forecast timestamps do not line up with the held-out steps",
        }
        for uid, model, window in short
    ]
    if len(short):
        bad = pd.MultiIndex.from_frame(merged[[ID, "model", "window"]]).isin(short)
        merged = merged[~bad]
    merged = merged.sort_values([ID, "model", "window", DS], kind="stable").reset_index(drop=True)
    merged["step"] = merged.groupby([ID, "model", "window"], sort=False).cumcount() + 1
    front = [ID, "model", "window", "cutoff", DS, "step", Y, "yhat"]
    return merged[front + [c for c in merged.columns if c not in front]], failures


def wide_for_metrics(forecasts: pd.DataFrame, levels: Sequence[int]) -> tuple[pd.DataFrame, list]:
    """Long window forecasts -> the wide layout the metrics take (one column per model)."""
    value_cols = ["yhat", *(c for c in interval_columns(levels) if c in forecasts.columns)]
    wide = forecasts.pivot_table(
        index=[ID, "cutoff", DS], columns="model", values=value_cols, aggfunc="first", sort=True
    )
    names: dict[tuple[str, str], str] = {}
    for value, model in wide.columns:
        if value == "yhat":
            names[(value, model)] = model
        else:
            _, side, level = value.split("_")
            names[(value, model)] = f"{model}-{side}-{level}"
    wide.columns = [names[c] for c in wide.columns]
    actual = forecasts.groupby([ID, "cutoff", DS], sort=True)[Y].first()
    wide = wide.join(actual).reset_index()
    models = sorted(forecasts["model"].unique().tolist())
    return wide, models


def _score(
    forecasts: pd.DataFrame,
    hist: pd.DataFrame,
    metrics: Sequence[Metric],
    task: ForecastTask,
) -> pd.DataFrame:
    """Metric values per series x model x window for the forecasts that passed validation."""
    columns = [*SCORE_COLUMNS, *(metric_name(m) for m in metrics)]
    if forecasts.empty:
        return pd.DataFrame(columns=columns)
    wide, models = wide_for_metrics(forecasts, task.levels)
    scored = evaluate(wide, metrics, models, hist, task.season_length)
    windows = forecasts[[ID, "model", "cutoff", "window"]].drop_duplicates()
    scored = scored.merge(windows, on=[ID, "model", "cutoff"], how="inner")
    scored["status"] = "ok"
    scored["reason"] = ""
    return scored[columns]


def _with_failures(
    scores: pd.DataFrame,
    failures: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    actuals: pd.DataFrame,
    metrics: Sequence[Metric],
) -> pd.DataFrame:
    """Add failed (per window) and skipped (no window) rows, with their reasons."""
    extra = []
    if failures:
        failed = pd.DataFrame(failures).drop_duplicates([ID, "model", "window"])
        cutoffs = actuals[[ID, "window", "cutoff"]].drop_duplicates()
        failed = failed.merge(cutoffs, on=[ID, "window"], how="left").assign(status="failed")
        extra.append(failed)
    if skipped:
        extra.append(pd.DataFrame(skipped).assign(window=-1, cutoff=pd.NaT, status="skipped"))
    frames = [f for f in (scores, *extra) if not f.empty]
    if not frames:
        return scores
    out = pd.concat(frames, ignore_index=True)
    for metric in metrics:
        name = metric_name(metric)
        # When every model failed there are no scored rows, so no metric columns yet.
        out[name] = out[name].astype(float) if name in out else float("nan")
    out["window"] = out["window"].astype(int)
    out["reason"] = out["reason"].fillna("")
    columns = [*SCORE_COLUMNS, *(metric_name(m) for m in metrics)]
    return out[columns].sort_values([ID, "model", "window"], kind="stable").reset_index(drop=True)
