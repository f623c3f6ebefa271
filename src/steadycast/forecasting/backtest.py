"""Rolling-origin backtest of the routed candidate models over one partition of series.

For each series the last ``windows`` origins are taken, ``step`` apart; by default
(:func:`auto_step`) whole weekly or daily cycles apart and before the forecast's origin, so
every window covers the same hours and weekdays as the forecast. At each origin a model is
fitted on the history before it and scored on the next ``horizon`` points. Window 0 is the
most recent origin, window 1 the one before, and so on, so window 0 exists for every
backtested series even when short series get fewer windows.

Models are vectorised over series (and global models need the whole batch), so each model is
called with every series routed to it (slow models in chunks, see :func:`batches`), through the
isolated runner when one is given: slow models once per window; a model that declares
``capabilities.backtests_itself`` (the global LightGBM) once for all its windows
(``BacktestTask``), fitting once before the oldest origin; a model that declares
``windows_in_one_call`` (the fast built-in ones) once for all its windows too, refitted at each
origin by the worker from the one history it was sent.
A call for all windows is cut into the windows it covers and judged exactly as per-window
answers are, so scores, window forecasts and failures look the same either way (except that a
model that crashes in such a call fails all its windows). A model that crashes, times out or
returns an invalid forecast is recorded as ``failed`` for the series concerned; the backtest
itself never fails because of a model.

Every score is kept (``BacktestResult.scores``), together with the window forecasts they come
from (``BacktestResult.forecasts``), so selection can build ensembles and intervals from them
without refitting and a person can see why a model was chosen.

Plain functions on pandas frames, no I/O and no global state: the same code runs in a local
process pool and inside Spark's ``applyInPandas``.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from steadycast.config import PipelineConfig
from steadycast.errors import ModelError
from steadycast.forecasting._segments import Layout, canonical_ids, sorted_runs
from steadycast.forecasting.metrics import (
    DEFAULT_METRICS,
    Metric,
    block_scores,
    coverage,
    evaluate,
    metric_name,
    series_scales,
)
from steadycast.forecasting.pools import step_days
from steadycast.forecasting.profile import SAFE_MODELS
from steadycast.models.base import BacktestTask, Capabilities, ForecastTask, answer
from steadycast.models.validation import to_naive_utc, validate_against

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
    "model_layout",
    "model_task_for",
    "task_for",
    "wide_for_metrics",
]

ID, DS, Y = "unique_id", "ds", "y"

Job = tuple[str, dict[str, Any], pd.DataFrame, ForecastTask]
Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

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


def auto_step(task: ForecastTask) -> int:
    """Points between backtest origins when the pipeline sets none: one horizon, rounded up to
    a whole number of the longest declared season that spans at most a week.

    With it the backtest also leaves the newest ``step - horizon`` points out of its windows
    (:func:`backtest`), so every origin is a whole number of cycles before the forecast's and
    each window covers the hours and weekdays the forecast will: a day-ahead forecast of
    hourly data made on a Sunday night is judged on the Mondays and Tuesdays of earlier weeks,
    not on the six days before it, which never show how a model carries a weekend into a
    working day (bench/results/backtest_alignment.md: day-ahead from seven origins, generated
    meters MASE 0.720 -> 0.701 with coverage steady across weekdays, real households with a
    weak weekly shape 0.739 -> 0.748). Longer seasons are left out: windows a year apart
    judged M4 Weekly's development half on old regimes (OWA 0.683 -> 0.713). The price is
    history: origins further apart need more of it, and a series too short for every window
    gets fewer (``series.note`` says so); one too short for a single window so placed is
    backtested with its newest window at its history's end, as before.
    """
    horizon = task.horizon
    span = step_days(task.frequency)
    seasons = task.season_lengths or (task.season_length,)
    cycles = [s for s in seasons if s > 1 and s * span <= _WEEK_DAYS]
    if not cycles:
        return horizon
    cycle = max(cycles)
    return -(-horizon // cycle) * cycle


_WEEK_DAYS = 7.0 + 1e-9  # a week of steps, with room for float rounding of the step length


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
    layout, _ = model_layout(history, id_col=id_col, time_col=time_col, target_col=target_col)
    return layout.frame


def model_layout(
    history: pd.DataFrame,
    *,
    id_col: str = ID,
    time_col: str = DS,
    target_col: str = Y,
) -> tuple[Layout, npt.NDArray[Any]]:
    """:func:`model_history` cut into series, and the ids of ``history`` (as str) in the order
    they first appear in it, series without values included.

    The id column is read once for both: when the history arrives sorted, as it does from the
    prepare stage, nothing is sorted or looked up by hashing.
    """
    # Canonical types, the ones validate_forecast returns: str ids, naive UTC timestamps.
    ids = canonical_ids(history[id_col])
    stamps = to_naive_utc(history[time_col]).to_numpy()
    order, starts, lengths = sorted_runs(ids, stamps)
    first_seen = ids[starts] if order is None else np.asarray(pd.unique(ids), dtype=object)
    values = history[target_col].astype("float64").to_numpy()
    data = pd.DataFrame({ID: ids, DS: stamps, Y: values})
    if order is not None:
        data = data.take(order)
        data.index = pd.RangeIndex(len(data))
    y = data[Y].to_numpy()
    missing = np.isnan(y)
    if not missing.any():
        return Layout.of(data, cuts=(starts, lengths)), first_seen
    # Keep each series from its first to its last observed value.
    position = np.arange(len(y))
    seen = np.where(missing, -1, position)
    last_seen = np.maximum.reduceat(seen, starts) if len(starts) else seen[:0]
    seen = np.where(missing, len(y), position)
    first_obs = np.minimum.reduceat(seen, starts) if len(starts) else seen[:0]
    kept = (position >= np.repeat(first_obs, lengths)) & (position <= np.repeat(last_seen, lengths))
    data = data[kept].reset_index(drop=True)
    y = data[Y].to_numpy().copy()
    gaps = np.isnan(y)
    if gaps.any():
        # Every gap left is inside its series, between two observed values of that series, so
        # one interpolation over all rows (by row position, as pandas' "linear" does per
        # series) fills each from its own neighbours.
        at = np.arange(len(y), dtype=np.float64)
        y[gaps] = np.interp(at[gaps], at[~gaps], y[~gaps])
        data[Y] = y
    return Layout.of(data), first_seen


def _run_inline(job: Job) -> pd.DataFrame | ModelError:
    """Call a model in this process: the error boundary when no isolated runner is given."""
    from steadycast.models.registry import create_model

    name, params, history, task = job
    try:
        # Model chatter is not an error (an isolated worker would not raise it either); the
        # platform judges the validated output and the backtest score.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return answer(create_model(name, params), history, task)
    except ModelError as exc:
        return exc
    except Exception as exc:  # the boundary around model code: any failure is the model's
        error = ModelError(name, f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error


def call_models(jobs: Iterable[Job], runner: Runner | None) -> list[pd.DataFrame | ModelError]:
    """Run model jobs through ``runner`` (isolated, in order) or in-process when it is None.

    ``jobs`` may be a generator: each job's history is then built only when its turn comes.
    """
    if isinstance(jobs, Sequence) and not jobs:
        return []
    if runner is None:
        return [_run_inline(job) for job in jobs]
    return list(runner.map(jobs))


def batches(ids: Sequence[Any], capabilities: Capabilities | None) -> list[list[Any]]:
    """Split the series of one model call into jobs.

    Slow per-series models (``cost="full"``) are called on chunks of ``FULL_COST_BATCH``
    series: a job must finish within the runner's time limit (a large partition of a slow auto
    model would not), chunks spread over the workers, and a crash costs
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
    points: Ints | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Windows per series, and the (series, model) pairs to backtest or skip (with why).
    ``lengths``: the points the windows may use; ``points``: the series' lengths the notes
    report (``lengths`` by default).

    Series routed to the same models are planned together, so the work is per distinct model
    list and per model, not per series.
    """
    min_train = min_train_length(horizon)
    fits = ((lengths - horizon - min_train) // step + 1).clip(lower=0, upper=windows)
    fits = fits.where(lengths >= horizon + min_train, 0).astype(int)
    series = pd.DataFrame({ID: lengths.index, "windows": fits.to_numpy()})
    routed = routing.assign(**{ID: routing[ID].astype(str)}).set_index(ID)["models"]
    routed = routed.reindex(lengths.index)
    n = lengths.to_numpy()
    shown = n if points is None else np.asarray(points)
    n_windows = fits.to_numpy()
    lists: dict[tuple[str, ...], int] = {}
    list_of = np.array(
        [
            lists.setdefault(
                tuple(m) if isinstance(m, list | tuple) else SAFE_MODELS[:1], len(lists)
            )
            for m in routed.to_numpy()
        ],
        dtype=np.int64,
    )
    plan = _PlanState(len(n))
    for models, code in lists.items():
        members = np.flatnonzero(list_of == code)
        plan.add_group(models, members, n, n_windows, capabilities, horizon, windows, step, shown)
    skips = plan.skips
    distinct = list(plan.kept_lists)
    series["models"] = [list(distinct[k]) for k in plan.kept_of.tolist()]
    series["note"] = plan.notes.tolist()
    ids = lengths.index.to_numpy(dtype=object)
    pair_frame = _in_series_order(ids, plan.pairs, [ID, "model"])
    skipped_frame = _in_series_order(
        ids,
        [(rows, place, model) for rows, place, model, _, _ in skips],
        [ID, "model", "reason"],
        reasons=[
            (f"needs {need} points, the first backtest window has ", first)
            for _, _, _, need, first in skips
        ],
    )
    return series, pair_frame, skipped_frame


class _PlanState:
    """What :func:`_plan` builds up over the groups of series routed to the same models."""

    def __init__(self, n_series: int) -> None:
        self.kept_lists: dict[tuple[str, ...], int] = {}
        self.kept_of = np.zeros(n_series, dtype=np.int64)
        self.notes = np.full(n_series, "", dtype=object)
        self.pairs: list[tuple[Ints, int, str]] = []  # (series, place in its list, model)
        # (series, place in its list, model, points it needs, points the first window has)
        self.skips: list[tuple[Ints, int, str, int, Ints]] = []

    def add_group(
        self,
        models: tuple[str, ...],
        members: Ints,
        n: Ints,
        n_windows: Ints,
        capabilities: Mapping[str, Capabilities],
        horizon: int,
        windows: int,
        step: int,
        points: Ints,
    ) -> None:
        """Plan the series ``members``, all routed to ``models``: short ones get the simple
        models; the others the models whose minimum history their first window leaves.
        ``n``: the points the windows may use; ``points``: the lengths the notes report."""
        min_train = min_train_length(horizon)
        short = members[n_windows[members] == 0]
        if len(short):
            simple = [m for m in models if m in SAFE_MODELS] or [
                m for m in SAFE_MODELS if m in capabilities
            ]
            self.kept_of[short] = self.kept_lists.setdefault(
                tuple(simple or SAFE_MODELS[:1]), len(self.kept_lists)
            )
            self.notes[short] = [
                f"too short to backtest: {k} point{'' if k == 1 else 's'}, one window needs "
                f"{horizon + min_train} ({horizon} to score, {min_train} to fit); simple models only"
                for k in points[short].tolist()
            ]
        rest = members[n_windows[members] > 0]
        if not len(rest):
            return
        first_train = n[rest] - horizon - (n_windows[rest] - 1) * step
        keep = np.zeros((len(rest), len(models)), dtype=bool)
        for place, model in enumerate(models):
            need = capabilities[model].min_history if model in capabilities else 1
            keep[:, place] = need <= first_train
            self.pairs.append((rest[keep[:, place]], place, model))
            skipped = ~keep[:, place]
            if skipped.any():
                self.skips.append((rest[skipped], place, model, need, first_train[skipped]))
        patterns, pattern_of = np.unique(keep, axis=0, return_inverse=True)
        for k, pattern in enumerate(patterns):
            chosen = tuple(m for m, on in zip(models, pattern.tolist(), strict=True) if on)
            self.kept_of[rest[pattern_of.reshape(-1) == k]] = self.kept_lists.setdefault(
                chosen, len(self.kept_lists)
            )
        partial = rest[n_windows[rest] != windows]
        self.notes[partial] = [
            f"{w} of {windows} windows ({k} points)"
            for w, k in zip(n_windows[partial].tolist(), points[partial].tolist(), strict=True)
        ]


def _in_series_order(
    ids: npt.NDArray[Any],
    groups: list[tuple[Ints, int, str]],
    columns: list[str],
    reasons: list[tuple[str, Ints]] | None = None,
) -> pd.DataFrame:
    """Rows ``(series, model[, reason])`` from per-model groups, series first, then the model's
    place in the series' list (the order of a loop over series and their models)."""
    if not groups or not sum(len(g[0]) for g in groups):
        return pd.DataFrame([], columns=columns)
    series = np.concatenate([g[0] for g in groups])
    place = np.concatenate([np.full(len(g[0]), g[1]) for g in groups])
    model = np.concatenate([np.full(len(g[0]), g[2], dtype=object) for g in groups])
    order = np.lexsort((place, series))
    data: dict[str, Any] = {ID: ids[series[order]], "model": model[order]}
    if reasons is not None:
        text = np.concatenate(
            [
                np.array([f"{head}{k}" for k in first.tolist()], dtype=object)
                for head, first in reasons
            ]
        )
        data["reason"] = text[order]
    return pd.DataFrame(data, columns=columns)


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
        routing: ``unique_id, models`` from :func:`steadycast.forecasting.profile.route`.
        task: horizon, frequency, season lengths and interval levels.
        windows: origins per series; short series get fewer (at least one horizon must be left
            to fit on, see :func:`min_train_length`), and series too short for one window get
            no backtest and only the simple models (``series.note`` says so).
        step: points between origins; 0 means :func:`auto_step` (at least one horizon, so
            windows never overlap), with window 0 ending that many points before the
            history's end instead of at it, so origins are whole cycles before the forecast's.
        runner: isolated runner; None calls models in this process.
        capabilities: per model name; models missing here are assumed to need one point.
        params: model parameters by model name.
        metrics: defaults to MASE, sMAPE, RMSSE and coverage at each of ``task.levels``.
    """
    horizon = task.horizon
    capabilities = dict(capabilities or {})
    params = dict(params or {})
    metrics = list(metrics) if metrics is not None else _default_metrics(task.levels)
    layout, _ = model_layout(history)
    # The default step also lines the windows up with the forecast (see auto_step).
    gap = 0 if step else auto_step(task) - horizon
    step = step or horizon + gap
    gaps = _gaps(layout.lengths, horizon, gap)
    lengths = pd.Series(layout.lengths - gaps, index=pd.Index(layout.ids, name=ID))
    series, pairs, skipped = _plan(
        lengths, routing, capabilities, horizon, windows, step, points=layout.lengths
    )
    calls, windows_of = _calls(layout, series, pairs, capabilities, task, step, gaps)
    own = _own_calls(layout, series, pairs, capabilities, task, step, gaps)
    # Each call's history is cut from the model history when the call is made, so one copy
    # at a time is alive (per worker), not one per model and window.
    jobs = itertools.chain(
        (
            (
                c.model,
                dict(params.get(c.model, {})),
                layout.take(layout.rows(c.series, 0, c.lengths)),
                c.task,
            )
            for c in calls
        ),
        (
            (
                c.model,
                dict(params.get(c.model, {})),
                layout.take(layout.rows(c.series, 0, c.lengths)),
                c.task,
            )
            for c in own
        ),
    )
    outputs = call_models(jobs, runner)
    per_window = list(zip(calls, outputs[: len(calls)], strict=True))
    for c, output in zip(own, outputs[len(calls) :], strict=True):
        per_window.extend(_split_windows(c, output, layout, windows_of))
    checked, failures = _collect(
        [c for c, _ in per_window], [o for _, o in per_window], layout, windows_of
    )
    del outputs
    forecasts, scores, misaligned = _join_and_score(checked, layout, windows_of, task, metrics)
    failures.extend(misaligned)
    scores = _with_failures(scores, failures, skipped, _cutoff_frame(layout, windows_of), metrics)
    return BacktestResult(
        scores=scores,
        forecasts=forecasts,
        series=series,
        horizon=horizon,
        season_length=task.season_length,
    )


def _gaps(lengths: Ints, horizon: int, gap: int) -> Ints:
    """Points between each series' newest window and its history's end: ``gap`` (the default
    step's alignment with the forecast), or 0 for a series too short for one window so
    aligned, which is backtested as it would be without the alignment rather than not at all."""
    fits = lengths - gap >= horizon + min_train_length(horizon)
    out: Ints = np.where(fits, gap, 0).astype(np.int64)
    return out


def _calls(
    layout: Layout,
    series: pd.DataFrame,
    pairs: pd.DataFrame,
    capabilities: Mapping[str, Capabilities],
    task: ForecastTask,
    step: int,
    gaps: Ints | None = None,
) -> tuple[list[_Call], list[_Window]]:
    """The model calls of the backtest, window by window and model by model (in name order),
    and the windows they are for (a series' window 0 ends ``gaps`` points before the end of its
    history; none by default)."""
    horizon = task.horizon
    n_windows = series["windows"].to_numpy()
    pair_series = layout.ids.searchsorted(pairs[ID].to_numpy()) if len(pairs) else np.zeros(0)
    pair_model = pairs["model"].to_numpy()
    calls: list[_Call] = []
    windows_of: list[_Window] = []
    for window in range(int(n_windows.max()) if len(n_windows) else 0):
        active = np.flatnonzero(n_windows > window)
        offset = window * step + (0 if gaps is None else gaps[active])
        train_len = layout.lengths[active] - horizon - offset
        windows_of.append(_Window(window, active, train_len, _cutoffs(layout, active, train_len)))
        for name in sorted(set(pair_model.tolist())):
            if _one_call(capabilities.get(name)):
                continue  # one call for all its windows: see _own_calls
            chosen = pair_series[pair_model == name]
            chosen = chosen[n_windows[chosen] > window].astype(np.int64)
            model_task = model_task_for(task, capabilities.get(name))
            for chunk in batches(chosen.tolist(), capabilities.get(name)):
                positions = np.asarray(chunk, dtype=np.int64)
                lens = train_len[np.searchsorted(active, positions)]
                calls.append(_Call(name, window, positions, lens, model_task))
    return calls, windows_of


def _one_call(capabilities: Capabilities | None) -> bool:
    """Whether a model gets all its windows in one call: a model that backtests itself, or one
    that declares ``windows_in_one_call`` (the fast built-in models: the worker refits them at
    each origin, ``refit_per_window``). Other models stay one call per window and chunk, each
    within the time limit; so do models given covariates, whose windows need the covariates
    after each origin."""
    if capabilities is None:
        return False
    if capabilities.backtests_itself:
        return True
    return capabilities.windows_in_one_call and not capabilities.exogenous


@dataclass(frozen=True)
class _OwnCall:
    """One call for all ``windows`` of a model's series (see :func:`_one_call`)."""

    model: str
    windows: int
    series: Ints
    lengths: Ints  # of the history sent: the newest window ends where it ends
    task: BacktestTask


def _own_calls(
    layout: Layout,
    series: pd.DataFrame,
    pairs: pd.DataFrame,
    capabilities: Mapping[str, Capabilities],
    task: ForecastTask,
    step: int,
    gaps: Ints | None = None,
) -> list[_OwnCall]:
    """The calls of models that take all their windows at once (:func:`_one_call`): one per
    model and number of windows (series of one call share their windows), in chunks as
    :func:`batches` cuts them. Each call gets the history of its series but the newest
    ``gaps`` points."""
    n_windows = series["windows"].to_numpy()
    pair_series = layout.ids.searchsorted(pairs[ID].to_numpy()) if len(pairs) else np.zeros(0)
    pair_model = pairs["model"].to_numpy()
    calls: list[_OwnCall] = []
    for name in sorted(set(pair_model.tolist())):
        if not _one_call(capabilities.get(name)):
            continue
        model_task = model_task_for(task, capabilities.get(name))
        chosen = pair_series[pair_model == name].astype(np.int64)
        for k in sorted(set(n_windows[chosen].tolist())):
            if k == 0:
                continue
            members = chosen[n_windows[chosen] == k]
            own_task = BacktestTask(**vars(model_task), windows=int(k), step=step)
            for chunk in batches(members.tolist(), capabilities.get(name)):
                positions = np.asarray(chunk, dtype=np.int64)
                sent = layout.lengths[positions] - (0 if gaps is None else gaps[positions])
                calls.append(_OwnCall(name, int(k), positions, sent, own_task))
    return calls


def _split_windows(
    call: _OwnCall,
    output: pd.DataFrame | ModelError,
    layout: Layout,
    windows_of: Sequence[_Window],
) -> list[tuple[_Call, pd.DataFrame | ModelError]]:
    """One model call's answer for all its windows, cut into what per-window calls would have
    returned: a row belongs to the window whose cutoff (the last time seen) it names, so rows
    for any other origin count as missing and are judged by :func:`_collect` like any other."""
    plain = call.task.forecast_task()
    if isinstance(output, pd.DataFrame) and not {ID, "cutoff"} <= set(output.columns):
        output = ModelError(call.model, "cross_validation returned no 'cutoff' column")
    pieces: list[tuple[_Call, pd.DataFrame | ModelError]] = []
    if isinstance(output, pd.DataFrame):
        ids = canonical_ids(output[ID])
        cutoffs = to_naive_utc(output["cutoff"]).to_numpy()
        place = pd.Index(layout.ids[call.series]).get_indexer(ids)
    for window in range(call.windows):
        w = windows_of[window]
        at = np.searchsorted(w.active, call.series)
        piece = _Call(call.model, window, call.series, w.train_len[at], plain)
        if not isinstance(output, pd.DataFrame):
            pieces.append((piece, output))
            continue
        expected = w.cutoffs[at]
        mine = (place >= 0) & (cutoffs == expected[np.maximum(place, 0)])
        rows = output.loc[mine].drop(columns="cutoff").reset_index(drop=True)
        pieces.append((piece, rows))
    return pieces


def _join_and_score(
    checked: Sequence[_Checked],
    layout: Layout,
    windows_of: list[_Window],
    task: ForecastTask,
    metrics: Sequence[Metric],
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """``(forecasts, scores, misaligned)``: the valid window forecasts joined to the held-out
    actuals and scored; forecasts that do not line up with them are failures."""
    if layout.strictly_increasing():
        blocks, misaligned = _aligned_blocks(checked, layout, windows_of, task)
        forecasts = blocks.frame(layout, task.levels)
        scores = blocks.scores(layout, metrics, task)
        if scores is None:
            scores = _score(forecasts, layout.frame, metrics, task)
        return forecasts, scores, misaligned
    actuals = _actuals(layout, windows_of, task.horizon)
    forecasts, misaligned = _align(_long_forecasts(checked, task.levels), actuals, task.horizon)
    return forecasts, _score(forecasts, layout.frame, metrics, task), misaligned


def _cutoff_frame(layout: Layout, windows_of: list[_Window]) -> pd.DataFrame:
    """``unique_id, window, cutoff`` of every backtested series and window."""
    return pd.DataFrame(
        {
            ID: np.concatenate([layout.ids[w.active] for w in windows_of] or [np.zeros(0, object)]),
            "window": np.concatenate(
                [np.full(len(w.active), w.window) for w in windows_of] or [np.zeros(0, int)]
            ),
            "cutoff": np.concatenate(
                [w.cutoffs for w in windows_of] or [np.zeros(0, "datetime64[ns]")]
            ),
        }
    )


@dataclass(frozen=True)
class _Window:
    """One backtest origin: its active series, how many points each trains on, the cutoffs."""

    window: int
    active: Ints
    train_len: Ints
    cutoffs: npt.NDArray[np.datetime64]


@dataclass(frozen=True)
class _Call:
    """One model call of the backtest: a model, a window, its series and their points."""

    model: str
    window: int
    series: Ints
    lengths: Ints
    task: ForecastTask


def _cutoffs(layout: Layout, active: Ints, train_len: Ints) -> npt.NDArray[np.datetime64]:
    """The last timestamp each active series trains on (the latest, ignoring NaT)."""
    found: npt.NDArray[np.datetime64] = layout.last_ticks(active, train_len).view("datetime64[ns]")
    return found


def _actuals(layout: Layout, windows_of: list[_Window], horizon: int) -> pd.DataFrame:
    """The held-out rows of every window: ``unique_id, ds, y, cutoff, window``."""
    tests = []
    for w in windows_of:
        rows = layout.rows(w.active, w.train_len, horizon)
        test = layout.frame.take(rows).reset_index(drop=True)
        test["cutoff"] = np.repeat(w.cutoffs, horizon)
        tests.append(test.assign(window=w.window))
    return pd.concat(tests, ignore_index=True) if tests else _empty_actuals()


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


@dataclass(frozen=True)
class _Checked:
    """One model call that returned a usable frame: its valid rows and their series."""

    model: str
    window: int
    valid: pd.DataFrame
    series: Ints  # position in the layout of each valid row's series


def _collect(
    calls: Sequence[_Call],
    outputs: Sequence[pd.DataFrame | ModelError],
    layout: Layout,
    windows_of: Sequence[_Window],
) -> tuple[list[_Checked], list[dict[str, Any]]]:
    """Validate each model's output; keep valid rows, turn everything else into failures."""
    checked: list[_Checked] = []
    failures: list[dict[str, Any]] = []
    for call, output in zip(calls, outputs, strict=True):
        model, window, positions = call.model, call.window, call.series
        ids = layout.ids[positions]
        if isinstance(output, ModelError):
            failures.extend(
                {ID: uid, "model": model, "window": window, "reason": output.problem}
                for uid in ids.tolist()
            )
            continue
        w = windows_of[window]
        last = w.cutoffs[np.searchsorted(w.active, positions)]
        result = validate_against(output, ids, last, call.task, model)
        for uid, reason in result.failures.items():
            failures.append({ID: uid, "model": model, "window": window, "reason": str(reason)})
        answered = np.zeros(len(ids), dtype=bool)
        answered[result.series] = True
        if result.failures:
            answered[pd.Index(ids).get_indexer(list(result.failures))] = True
        failures.extend(
            {ID: uid, "model": model, "window": window, "reason": "no forecast returned"}
            for uid in ids[~answered].tolist()
        )
        if len(result.valid.columns):  # a frame unusable as a whole failed every series above
            checked.append(_Checked(model, window, result.valid, positions[result.series]))
    return checked, failures


def _long_forecasts(checked: Sequence[_Checked], levels: Sequence[int]) -> pd.DataFrame:
    """The valid window forecasts as one long frame, call after call."""
    wanted = ["yhat", *interval_columns(levels)]
    frames = []
    for c in checked:
        columns = [ID, DS, *(col for col in wanted if col in c.valid.columns)]
        frames.append(c.valid[columns].assign(model=c.model, window=c.window))
    if not frames:
        return _empty_forecasts()
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class _Blocks:
    """Aligned window forecasts, one row of ``horizon`` steps per (series, model, window),
    sorted like the long frame (series, model, window)."""

    series: Ints
    model: npt.NDArray[Any]
    window: Ints
    cutoff: npt.NDArray[np.datetime64]
    train_len: Ints
    ds: npt.NDArray[np.datetime64]  # (blocks, horizon)
    y: Floats
    yhat: Floats
    bounds: dict[str, Floats]  # yhat_lo_L / yhat_hi_L, when any model gave the columns
    rows: int  # valid rows before alignment (0: no forecast at all)

    def frame(self, layout: Layout, levels: Sequence[int]) -> pd.DataFrame:
        if self.rows == 0:
            return _empty_forecasts()
        blocks, horizon = self.yhat.shape
        columns: dict[str, Any] = {
            ID: np.repeat(layout.ids[self.series], horizon),
            "model": np.repeat(self.model, horizon),
            "window": np.repeat(self.window, horizon),
            "cutoff": np.repeat(self.cutoff, horizon),
            DS: self.ds.reshape(-1),
            "step": np.tile(np.arange(1, horizon + 1, dtype=np.int64), blocks),
            Y: self.y.reshape(-1),
            "yhat": self.yhat.reshape(-1),
        }
        for name in interval_columns(levels):
            if name in self.bounds:
                columns[name] = self.bounds[name].reshape(-1)
        return pd.DataFrame(columns)

    def scores(
        self, layout: Layout, metrics: Sequence[Metric], task: ForecastTask
    ) -> pd.DataFrame | None:
        columns = [*SCORE_COLUMNS, *(metric_name(m) for m in metrics)]
        if not len(self.series):  # nothing lined up: no scores, as for an empty frame
            return pd.DataFrame(columns=columns)
        # One scale per (series, window), shared by the models scored on it.
        pair = self.series * (int(self.window.max(initial=0)) + 1) + self.window
        _, first, inverse = np.unique(pair, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)

        def scale(powers: Sequence[int]) -> Floats:
            values = series_scales(
                layout.frame[Y].to_numpy(),
                layout.starts,
                layout.lengths,
                self.series[first],
                self.train_len[first],
                task.season_length,
                powers,
            )
            return np.asarray(values[inverse], dtype=np.float64)

        bounds = {
            level: (self.bounds[f"yhat_lo_{level}"], self.bounds[f"yhat_hi_{level}"])
            for level in task.levels
            if f"yhat_lo_{level}" in self.bounds
        }
        values = block_scores(metrics, self.y, self.yhat, bounds, scale)
        if values is None:
            return None
        out = pd.DataFrame(
            {
                ID: layout.ids[self.series],
                "model": self.model,
                "window": self.window,
                "cutoff": self.cutoff,
                "status": "ok",
                "reason": "",
                **values,
            }
        )
        return out[columns]


def _aligned_blocks(
    checked: Sequence[_Checked],
    layout: Layout,
    windows_of: Sequence[_Window],
    task: ForecastTask,
) -> tuple[_Blocks, list[dict[str, Any]]]:
    """Join window forecasts to the held-out actuals, block-wise.

    A valid forecast has exactly ``horizon`` rows, in time order, and (no series repeating a
    timestamp) so has the held-out part of the history: the join is a comparison of the two
    rows of timestamps, and a forecast that does not match step for step is a failure.
    """
    horizon = task.horizon
    stacked = _stack(checked, task)
    series, model, window = stacked.series, stacked.model, stacked.window
    # The held-out rows of each block's series and window.
    train_len = np.zeros(len(series), dtype=np.int64)
    cutoff = np.zeros(len(series), dtype="datetime64[ns]")
    for w in windows_of:
        mine = window == w.window
        at = np.searchsorted(w.active, series[mine])
        train_len[mine] = w.train_len[at]
        cutoff[mine] = w.cutoffs[at]
    test = (layout.starts[series] + train_len)[:, None] + np.arange(horizon)
    lined_up = (stacked.ds.view(np.int64) == layout.ticks[test]).all(axis=1)
    failures = [
        {
            ID: uid,
            "model": m,
            "window": int(w),
            "reason": "forecast timestamps do not line up with the held-out steps",
        }
        for uid, m, w in zip(
            layout.ids[series[~lined_up]].tolist(),
            model[~lined_up].tolist(),
            window[~lined_up].tolist(),
            strict=True,
        )
    ]
    names, model_rank = np.unique(model.astype(str), return_inverse=True)
    del names
    keep = np.flatnonzero(lined_up)
    keep = keep[np.lexsort((window[keep], model_rank.reshape(-1)[keep], series[keep]))]
    y = layout.frame[Y].to_numpy()[test[keep]]
    blocks = _Blocks(
        series=series[keep],
        model=model[keep],
        window=window[keep],
        cutoff=cutoff[keep],
        train_len=train_len[keep],
        ds=stacked.ds[keep],
        y=y.reshape(len(keep), horizon),
        yhat=stacked.yhat[keep],
        bounds={name: v[keep] for name, v in stacked.bounds.items()} if stacked.has_bounds else {},
        rows=stacked.rows,
    )
    return blocks, failures


@dataclass(frozen=True)
class _Stacked:
    """The valid window forecasts of every call, one row of ``horizon`` steps per (series,
    model, window), call after call, before they are joined to the actuals."""

    series: Ints
    model: npt.NDArray[Any]
    window: Ints
    ds: npt.NDArray[np.datetime64]
    yhat: Floats
    bounds: dict[str, Floats]
    has_bounds: bool  # any model gave interval columns
    rows: int


def _stack(checked: Sequence[_Checked], task: ForecastTask) -> _Stacked:
    """Each call's valid rows as blocks of ``horizon`` steps, stacked (a call without bounds
    gets NaN bounds)."""
    horizon = task.horizon
    parts: dict[str, list[Any]] = {k: [] for k in ("series", "model", "window", "ds", "yhat")}
    bound_names = interval_columns(task.levels)
    bounds: dict[str, list[Floats]] = {name: [] for name in bound_names}
    has_bounds = False
    rows = 0
    for c in checked:
        count = len(c.series) // horizon
        rows += len(c.series)
        parts["series"].append(c.series[::horizon])
        parts["model"].append(np.full(count, c.model, dtype=object))
        parts["window"].append(np.full(count, c.window, dtype=np.int64))
        parts["ds"].append(c.valid[DS].to_numpy().reshape(count, horizon))
        parts["yhat"].append(c.valid["yhat"].to_numpy().reshape(count, horizon))
        given = bound_names[0] in c.valid.columns if bound_names else False
        has_bounds = has_bounds or given
        for name in bound_names:
            values = c.valid[name].to_numpy() if given else np.full(len(c.series), np.nan)
            bounds[name].append(values.reshape(count, horizon))
    if checked:
        series = np.concatenate(parts["series"]).astype(np.int64)
        model = np.concatenate(parts["model"])
        window = np.concatenate(parts["window"])
        ds = np.concatenate(parts["ds"]).astype("datetime64[ns]")
        yhat = np.concatenate(parts["yhat"]).astype(np.float64)
        bound_values = {name: np.concatenate(bounds[name]) for name in bound_names}
    else:
        series = window = np.zeros(0, dtype=np.int64)
        model = np.zeros(0, dtype=object)
        ds = np.zeros((0, horizon), dtype="datetime64[ns]")
        yhat = np.zeros((0, horizon))
        bound_values = {name: np.zeros((0, horizon)) for name in bound_names}
    return _Stacked(series, model, window, ds, yhat, bound_values, has_bounds, rows)


def _align(
    forecasts: pd.DataFrame, actuals: pd.DataFrame, horizon: int
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Join window forecasts to the held-out actuals; a forecast missing a step is a failure.

    The general case (a series repeats a timestamp); :func:`_aligned_blocks` is the same join
    when every series' timestamps increase.
    """
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
    skipped: pd.DataFrame,
    cutoffs: pd.DataFrame,
    metrics: Sequence[Metric],
) -> pd.DataFrame:
    """Add failed (per window) and skipped (no window) rows, with their reasons.

    ``cutoffs``: ``unique_id, window, cutoff`` of every backtested series and window.
    """
    extra = []
    if failures:
        failed = pd.DataFrame(failures).drop_duplicates([ID, "model", "window"])
        failed = failed.merge(cutoffs, on=[ID, "window"], how="left").assign(status="failed")
        extra.append(failed)
    if not skipped.empty:
        extra.append(skipped.assign(window=-1, cutoff=pd.NaT, status="skipped"))
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
