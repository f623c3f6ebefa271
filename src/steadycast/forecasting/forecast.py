"""Forecast one partition with the selected models, walking the fallback chain on failure.

For each series the chosen model (or each member of the chosen ensemble) is fitted on the full
history and its output validated. A series whose forecast fails walks its chain, in order:

    chosen model or ensemble -> next-best backtested models -> SeasonalNaive -> Naive
    -> the last published forecast -> nothing (source "none", the caller decides)

Naive follows SeasonalNaive because a series shorter than one season cannot be forecast by
SeasonalNaive. Every model is called once per round with all the series that need it, so
vectorised and global models see their batch; a model already run for a series is never run
again (an ensemble member that worked is reused when the chain reaches it as a single model).

Intervals are returned at every configured level for every series, and ``interval_source``
in the provenance says where they came from:

- ``calibrated``: yhat ± q_L(step) × the series' scale, q pooled over the backtest errors of
  every series of the partition (:mod:`steadycast.forecasting.intervals`). Bounds a model
  returns itself are replaced by these: measured on development data, models' own intervals
  (and the quantile averages of an ensemble's members) under-cover;
- ``history``: the partition has no backtest errors at all (every series too short): the
  quantile of the series' one-step changes times sqrt(k), the random-walk growth of the
  naive forecast's error;
- ``last_published``: taken from the last published forecast where it has them.

A series forecast from the last release keeps the levels the release has and only the missing
ones are derived (``interval_source`` then reads e.g. "last_published+calibrated"). Derived
lower bounds are clipped at 0 for series that have never been negative.

Plain functions on pandas frames, no I/O and no global state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from steadycast.config import PipelineConfig
from steadycast.errors import ModelError
from steadycast.forecasting._segments import Layout
from steadycast.forecasting.backtest import (
    DS,
    ID,
    Job,
    Runner,
    Y,
    backtest,
    batches,
    call_models,
    interval_columns,
    model_layout,
    model_task_for,
    task_for,
)
from steadycast.forecasting.covariates import (
    Covariates,
    mark_fallbacks,
    missing_future,
    route_without,
    unseen_conditions,
    with_covariates,
)
from steadycast.forecasting.covariates import candidates as covariate_candidates
from steadycast.forecasting.intervals import (
    Calibration,
    calibrate,
    calibrated_halves,
    history_halves,
)
from steadycast.forecasting.profile import profile_series, route
from steadycast.forecasting.selection import Selection, combine, ensemble_combination, select
from steadycast.models.base import Capabilities, ForecastTask
from steadycast.models.validation import expected_timestamps, to_naive_utc, validate_against

__all__ = [
    "LAST_PUBLISHED",
    "PROVENANCE_COLUMNS",
    "PartitionResult",
    "forecast_partition",
    "run_partition",
]

LAST_PUBLISHED = "LastPublished"
FALLBACK_MODELS: tuple[str, ...] = ("SeasonalNaive", "Naive")
Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
PROVENANCE_COLUMNS = (
    "unique_id",
    "model",
    "source",
    "fallback_reason",
    "metric",
    "backtest_score",
    "selection_reason",
    "interval_source",
    "steps",
)


@dataclass(frozen=True)
class PartitionResult:
    """What one partition produced.

    ``forecasts``: ``unique_id, ds, yhat, yhat_lo_L, yhat_hi_L`` (each configured level),
    ``model``. ``provenance``: one row per input series (see ``PROVENANCE_COLUMNS``):
    ``source`` is "selected", "ensemble", "fallback" or "none". ``scores``: every backtest score
    (including ensembles), for the store. ``selection``: the per-series ranking and reason.
    ``profile``: the series profiles (empty when selection was done elsewhere).
    """

    forecasts: pd.DataFrame
    provenance: pd.DataFrame
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    selection: pd.DataFrame = field(default_factory=pd.DataFrame)
    profile: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True)
class _Attempt:
    model: str  # a model or an ensemble name
    members: tuple[str, ...]
    source: str  # "selected" | "ensemble" | "fallback"


def _capabilities(config: PipelineConfig) -> dict[str, Capabilities]:
    from steadycast.models.registry import available_models

    models = available_models(
        plugins=config.models.plugins, disabled=tuple(config.models.disabled_plugins)
    )
    return {name: getattr(cls, "capabilities", Capabilities()) for name, cls in models.items()}


@dataclass(frozen=True)
class _Chains:
    """Each series' fallback chain: ``steps[i, k]`` is the k-th attempt (an index into
    ``attempts``) of series ``i``, for ``k < length[i]``."""

    attempts: list[_Attempt]
    steps: Ints
    length: Ints


def _chains(ids: npt.NDArray[Any], table: pd.DataFrame) -> _Chains:
    """The chain of each of ``ids``: its choice, its fallbacks, then FALLBACK_MODELS, each
    model once (the first time it comes)."""
    known: dict[tuple[str, tuple[str, ...], str], int] = {}

    def attempt_of(model: str, members: tuple[str, ...], source: str) -> int:
        return known.setdefault((model, members, source), len(known))

    n = len(ids)
    at = table.index.get_indexer(ids) if len(table) else np.full(n, -1)
    chosen = np.flatnonzero(at >= 0)
    rows = at[chosen]
    first = [
        attempt_of(str(model), tuple(members), str(source))
        for model, members, source in zip(
            table["model"].to_numpy()[rows].tolist(),
            table["members"].to_numpy()[rows].tolist(),
            table["source"].to_numpy()[rows].tolist(),
            strict=True,
        )
    ]
    fallbacks = pd.Series(table["fallbacks"].to_numpy()[rows], dtype=object).explode().dropna()
    fb_series = chosen[fallbacks.index.to_numpy(dtype=np.int64)]
    fb_models = fallbacks.to_numpy(dtype=object)
    # One rank per place in the chain: the choice, its fallbacks in order, then the last resorts.
    fb_rank = np.arange(len(fb_series)) - np.searchsorted(fb_series, fb_series) + 1
    last_series = np.repeat(np.arange(n), len(FALLBACK_MODELS))
    last_rank = np.tile(np.arange(len(FALLBACK_MODELS)), n) + 1 + len(fb_series) + 1
    series = np.concatenate([chosen, fb_series, last_series]).astype(np.int64)
    rank = np.concatenate([np.zeros(len(chosen), np.int64), fb_rank, last_rank])
    model = np.concatenate(
        [
            np.asarray([a[0] for a in known], dtype=object)[first]
            if first
            else np.zeros(0, object),
            fb_models,
            np.tile(np.asarray(FALLBACK_MODELS, dtype=object), n),
        ]
    )
    single = {m: attempt_of(m, (m,), "fallback") for m in dict.fromkeys(model[len(chosen) :])}
    attempt = np.concatenate(
        [np.asarray(first, dtype=np.int64), [single[m] for m in model[len(chosen) :].tolist()]]
    ).astype(np.int64)
    order = np.lexsort((rank, series))
    series, model, attempt = series[order], model[order], attempt[order]
    kept = ~pd.DataFrame({"s": series, "m": model}).duplicated().to_numpy()
    series, attempt = series[kept], attempt[kept]
    length = np.bincount(series, minlength=n).astype(np.int64)
    place = np.arange(len(series)) - np.repeat(np.cumsum(length) - length, length)
    steps = np.full((n, int(length.max()) if n else 0), -1, dtype=np.int64)
    steps[series, place] = attempt
    attempts = [_Attempt(m, members, source) for (m, members, source) in known]
    return _Chains(attempts, steps, length)


def forecast_partition(
    history: pd.DataFrame,
    config: PipelineConfig,
    runner: Runner | None,
    selection: Selection,
    last_published: pd.DataFrame | None = None,
    *,
    capabilities: Mapping[str, Capabilities] | None = None,
) -> PartitionResult:
    """Fit and forecast each series' chosen model, falling back as described in the module doc.

    Args:
        history: long frame ``unique_id, ds, y`` of the partition.
        config: the pipeline; horizon, frequency, levels and model params come from it.
        runner: isolated runner (``IsolatedRunner``); None runs models in this process.
        selection: from :func:`steadycast.forecasting.selection.select` on the same partition.
        last_published: the current release's rows (``unique_id, ds, yhat`` and any
            ``yhat_lo_L, yhat_hi_L``), used when every model fails for a series.
        capabilities: per model; read from the registry when not given.
    """
    task = task_for(config)
    levels = list(config.models.levels)
    caps = dict(capabilities) if capabilities is not None else _capabilities(config)
    layout, all_ids = model_layout(history)
    # Series are numbered in the order they came (the order of the provenance); ``place``
    # is where each one's rows are in the sorted history (-1: no observed value).
    place = pd.Index(layout.ids).get_indexer(all_ids) if len(all_ids) else np.zeros(0, np.intp)
    with_rows = np.flatnonzero(place >= 0)
    chains = _chains(all_ids[with_rows], selection.table.set_index(ID))
    walked = _walk(chains, layout, place[with_rows].astype(np.int64), task, caps, config, runner)

    outcome = _Outcome.of(len(all_ids))
    out = _Rows()
    for attempt_id, members in walked.by_attempt(chains):
        attempt = chains.attempts[attempt_id]
        series = with_rows[members]
        out.add(series, walked.combined(attempt, members, task), attempt.model)
        outcome.record(series, attempt.model, attempt.source, task.horizon)
    for k, sentences in walked.reasons.items():
        outcome.reasons[with_rows[k]] = "; ".join(sentences)
    has_chain = np.zeros(len(all_ids), dtype=bool)
    has_chain[with_rows] = chains.length > 0
    published = _Published(last_published, layout, task)
    _last_resort(outcome, out, published, all_ids, place, has_chain, task.horizon)
    if len(all_ids) == 0 or out.empty:
        return _result_without_forecasts(all_ids, outcome, selection, levels)
    forecasts, interval_source = _fill_intervals(
        out.frame(all_ids, levels), selection, layout, levels, task
    )
    return PartitionResult(
        forecasts=forecasts,
        provenance=_provenance(all_ids, outcome, interval_source, selection),
        scores=selection.scores,
        selection=selection.table,
    )


def _provenance(
    all_ids: npt.NDArray[Any],
    outcome: _Outcome,
    interval_source: dict[Any, str],
    selection: Selection,
) -> pd.DataFrame:
    """One row per input series (see ``PROVENANCE_COLUMNS``)."""
    provenance = pd.DataFrame(
        {
            ID: all_ids,
            "model": outcome.model,
            "source": outcome.source,
            "fallback_reason": outcome.reasons,
            "metric": np.nan,
            "backtest_score": np.nan,
            "selection_reason": np.nan,
            "interval_source": pd.Series(all_ids).map(interval_source).fillna("").to_numpy(),
            "steps": outcome.steps,
        }
    )
    return _with_scores(provenance, selection)


@dataclass(frozen=True)
class _Outcome:
    """Per input series: the model and source of its forecast, why it fell back, its steps."""

    model: npt.NDArray[Any]
    source: npt.NDArray[Any]
    reasons: npt.NDArray[Any]
    steps: Ints
    done: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, n: int) -> _Outcome:
        """``n`` series, none forecast yet (source "none")."""
        return cls(
            model=np.full(n, "", dtype=object),
            source=np.full(n, "none", dtype=object),
            reasons=np.full(n, "", dtype=object),
            steps=np.zeros(n, dtype=np.int64),
            done=np.zeros(n, dtype=bool),
        )

    def record(self, series: Ints, model: str, source: str, steps: int) -> None:
        self.source[series] = source
        self.model[series] = model
        self.steps[series] = steps
        self.done[series] = True


def _last_resort(
    outcome: _Outcome,
    out: _Rows,
    published: _Published,
    all_ids: npt.NDArray[Any],
    place: npt.NDArray[np.intp],
    has_chain: npt.NDArray[np.bool_],
    horizon: int,
) -> None:
    """Series no model forecast take the last published forecast, where there is one, and the
    reason says so either way."""
    reasons = outcome.reasons
    for i in np.flatnonzero(~outcome.done).tolist():
        why = str(reasons[i]) if place[i] >= 0 else "no observed values in the history"
        rows = published.rows(str(all_ids[i]), int(place[i]))
        if rows is not None:
            note = f"last published forecast ({len(rows)} of {horizon} steps)"
            out.add_published(i, rows)
            outcome.model[i], outcome.source[i] = LAST_PUBLISHED, "fallback"
            outcome.steps[i] = len(rows)
            reasons[i] = f"{why}; {note}" if why else note
        else:
            tail = "no last published forecast" if has_chain[i] or place[i] < 0 else ""
            reasons[i] = "; ".join(p for p in (why, tail) if p)


def _result_without_forecasts(
    all_ids: npt.NDArray[Any],
    outcome: _Outcome,
    selection: Selection,
    levels: Sequence[int],
) -> PartitionResult:
    """The result of a partition where no series got a forecast (or that has no series)."""
    model, source, reasons, steps = outcome.model, outcome.source, outcome.reasons, outcome.steps
    rows = [
        {ID: uid, "model": m, "source": s, "fallback_reason": r, "steps": n}
        for uid, m, s, r, n in zip(all_ids, model, source, reasons, steps.tolist(), strict=True)
    ]
    forecasts = pd.DataFrame(columns=[ID, DS, "yhat", "model"])
    for col in interval_columns(levels):
        forecasts[col] = np.nan
    provenance = pd.DataFrame(rows, columns=list(PROVENANCE_COLUMNS))
    provenance["interval_source"] = provenance[ID].map({}).fillna("")
    provenance = _with_scores(provenance, selection)
    columns = [ID, DS, "yhat", *interval_columns(levels), "model"]
    forecasts = forecasts[columns].sort_values([ID, DS], kind="stable").reset_index(drop=True)
    return PartitionResult(
        forecasts=forecasts,
        provenance=provenance,
        scores=selection.scores,
        selection=selection.table,
    )


class _ModelRuns:
    """What one model gave each series so far: not run, its validated rows, or why not."""

    def __init__(self, n: int) -> None:
        self.status = np.zeros(n, dtype=np.int8)  # 0 not run, 1 forecast, 2 failed
        self.reason = np.full(n, "", dtype=object)
        self.result = np.full(n, -1, dtype=np.int64)  # which validated frame holds its rows
        self.block = np.zeros(n, dtype=np.int64)  # and where: rows block*h .. block*h + h
        self.frames: list[pd.DataFrame] = []


@dataclass
class _Walked:
    """The outcome of the rounds: the attempt that gave each series its forecast (-1: none),
    the sentences of what failed before, and each model's results to combine."""

    outcome: Ints
    reasons: dict[int, list[str]]
    runs: dict[str, _ModelRuns]

    def by_attempt(self, chains: _Chains) -> list[tuple[int, Ints]]:
        found = np.flatnonzero(self.outcome >= 0)
        return [(int(a), found[self.outcome[found] == a]) for a in np.unique(self.outcome[found])]

    def combined(self, attempt: _Attempt, series: Ints, task: ForecastTask) -> dict[str, Floats]:
        """The forecast of ``series`` by ``attempt``: its model's rows, or for an ensemble its
        members' combined as its name says (:func:`~steadycast.forecasting.selection.combine`,
        the rule its backtest was scored with), each bound only where every member gave it."""
        horizon = task.horizon
        frames = [self._rows(m, series, horizon) for m in attempt.members]
        if len(frames) == 1:
            return frames[0]
        present = [c for c in frames[0] if all(c in f for f in frames)]
        out: dict[str, Floats] = {DS: frames[0][DS]}
        for column in present:
            if column == DS:
                continue
            stacked = np.stack([np.asarray(f[column], dtype=np.float64) for f in frames])
            out[column] = combine(stacked, ensemble_combination(attempt.model))
        return out

    def _rows(self, model: str, series: Ints, horizon: int) -> dict[str, Floats]:
        runs = self.runs[model]
        result, block = runs.result[series], runs.block[series]
        columns = [c for c in runs.frames[int(result[0])].columns if c != ID]
        out = {c: np.empty((len(series), horizon), dtype=runs.frames[0][c].dtype) for c in columns}
        for r in np.unique(result).tolist():
            mine = result == r
            frame = runs.frames[r]
            rows = (block[mine] * horizon)[:, None] + np.arange(horizon)
            for c in columns:
                out[c][mine] = frame[c].to_numpy()[rows]
        return out


def _walk(
    chains: _Chains,
    layout: Layout,
    place: Ints,
    task: ForecastTask,
    caps: Mapping[str, Capabilities],
    config: PipelineConfig,
    runner: Runner | None,
) -> _Walked:
    """Rounds of model calls: each round moves every unfinished series one step down its chain.

    Series ``i`` (in chain order) has its history at layout position ``place[i]``. Each model
    is called once per round (in chunks for slow ones) with every series that needs it, and
    never twice for a series: an ensemble member that worked is reused when the chain reaches
    it as a single model.
    """
    n = len(place)
    position = np.zeros(n, dtype=np.int64)
    outcome = np.full(n, -1, dtype=np.int64)
    reasons: dict[int, list[str]] = {}
    runs: dict[str, _ModelRuns] = {}
    pending = np.flatnonzero(chains.length > 0)
    while len(pending):
        current = chains.steps[pending, position[pending]]
        need: dict[str, list[Ints]] = {}
        for a in np.unique(current).tolist():
            mine = pending[current == a]
            for member in chains.attempts[a].members:
                runs.setdefault(member, _ModelRuns(n))
                need.setdefault(member, []).append(mine[runs[member].status[mine] == 0])
        wanted = {m: np.unique(np.concatenate(parts)) for m, parts in need.items()}
        _run_round(
            {m: w for m, w in wanted.items() if len(w)},
            runs,
            layout,
            place,
            task,
            caps,
            config,
            runner,
        )
        still = _judge_round(chains, runs, pending, current, outcome, reasons, position)
        pending = np.sort(np.concatenate(still)) if still else np.zeros(0, dtype=np.int64)
    return _Walked(outcome, reasons, runs)


def _judge_round(
    chains: _Chains,
    runs: dict[str, _ModelRuns],
    pending: Ints,
    current: Ints,
    outcome: Ints,
    reasons: dict[int, list[str]],
    position: Ints,
) -> list[Ints]:
    """After a round: series whose attempt worked get it as ``outcome``; the others get a
    sentence saying why and move one step down their chain. Returns, per attempt, the series
    that still have a step to try."""
    still: list[Ints] = []
    for a in np.unique(current).tolist():
        attempt = chains.attempts[a]
        mine = pending[current == a]
        failed = np.zeros(len(mine), dtype=bool)
        for member in attempt.members:
            failed |= runs[member].status[mine] != 1
        outcome[mine[~failed]] = a
        for k in mine[failed].tolist():
            problems = [
                (m, str(runs[m].reason[k])) for m in attempt.members if runs[m].status[k] != 1
            ]
            if len(attempt.members) == 1:
                sentence = f"{attempt.model} failed: {problems[0][1]}"
            else:
                detail = "; ".join(f"{m}: {r}" for m, r in problems)
                sentence = f"{attempt.model} failed: member {detail}"
            reasons.setdefault(k, []).append(sentence)
        moved = mine[failed]
        position[moved] += 1
        still.append(moved[position[moved] < chains.length[moved]])
    return still


def _run_round(
    need: dict[str, Ints],
    runs: dict[str, _ModelRuns],
    layout: Layout,
    place: Ints,
    task: ForecastTask,
    caps: Mapping[str, Capabilities],
    config: PipelineConfig,
    runner: Runner | None,
) -> None:
    """Call each needed model once (in chunks for slow ones) on its series; validate; record.

    ``need``: per model, the series (chain numbering) that need it, in chain order.
    """
    calls: list[tuple[str, Ints, ForecastTask]] = []
    for model, wanted in sorted(need.items()):
        model_task = model_task_for(task, caps.get(model))
        for chunk in batches(wanted.tolist(), caps.get(model)):
            calls.append((model, np.asarray(chunk, dtype=np.int64), model_task))
    # Each call's history is cut when the call is made: one copy alive at a time, not one each.
    jobs: Iterator[Job] = (
        (
            model,
            dict(config.models.params.get(model, {})),
            layout.take(layout.rows(place[series])),
            t,
        )
        for model, series, t in calls
    )
    for (model, series, model_task), output in zip(calls, call_models(jobs, runner), strict=True):
        record = runs[model]
        if isinstance(output, ModelError):
            record.status[series] = 2
            record.reason[series] = output.problem
            continue
        at = place[series]
        ids = layout.ids[at]
        last = layout.last_ticks(at).view("datetime64[ns]")
        checked = validate_against(output, ids, last, model_task, model)
        record.status[series] = 2
        if checked.failures:
            bad = pd.Index(ids).get_indexer(list(checked.failures))
            record.reason[series[bad]] = [str(r) for r in checked.failures.values()]
        unanswered = np.ones(len(series), dtype=bool)
        if checked.failures:
            unanswered[bad] = False
        heads = checked.series[:: task.horizon] if len(checked.series) else checked.series
        unanswered[heads] = False
        record.reason[series[unanswered]] = "no forecast returned"
        if len(heads):
            record.status[series[heads]] = 1
            record.result[series[heads]] = len(record.frames)
            record.block[series[heads]] = np.arange(len(heads))
            record.frames.append(checked.valid)


class _Rows:
    """The forecast rows of the partition, series by series, as arrays."""

    def __init__(self) -> None:
        self.parts: list[tuple[Ints, dict[str, Floats], npt.NDArray[Any], bool]] = []

    @property
    def empty(self) -> bool:
        return not any(len(series) for series, _, _, _ in self.parts)

    def add(self, series: Ints, values: dict[str, Floats], model: str) -> None:
        """``values``: ``(len(series), steps)`` arrays per column (``ds``, ``yhat``, bounds)."""
        width = values[DS].shape[1]
        flat = {c: v.reshape(-1) for c, v in values.items()}
        self.parts.append(
            (np.repeat(series, width), flat, np.full(len(series) * width, model, object), False)
        )

    def add_published(self, series: int, rows: pd.DataFrame) -> None:
        flat = {
            c: rows[c].to_numpy()
            for c in rows.columns
            if c in (DS, "yhat") or c.startswith("yhat_lo_") or c.startswith("yhat_hi_")
        }
        self.parts.append(
            (np.full(len(rows), series), flat, np.full(len(rows), LAST_PUBLISHED, object), True)
        )

    def frame(self, all_ids: npt.NDArray[Any], levels: Sequence[int]) -> pd.DataFrame:
        """``unique_id, ds, yhat, yhat_lo_L, yhat_hi_L, model, _from_release``, series in the
        order they were added."""
        series = np.concatenate([p[0] for p in self.parts])
        columns: dict[str, Any] = {
            ID: all_ids[series],
            DS: np.concatenate([p[1][DS].astype("datetime64[ns]") for p in self.parts]),
            "yhat": np.concatenate([p[1]["yhat"].astype(float) for p in self.parts]),
        }
        for col in interval_columns(levels):
            columns[col] = np.concatenate(
                [
                    p[1][col].astype(float) if col in p[1] else np.full(len(p[0]), np.nan)
                    for p in self.parts
                ]
            )
        columns["model"] = np.concatenate([p[2] for p in self.parts])
        columns["_from_release"] = np.concatenate([np.full(len(p[0]), p[3]) for p in self.parts])
        return pd.DataFrame(columns)


class _Published:
    """The last published rows of a series, looked up without scanning the release per series."""

    def __init__(self, last_published: pd.DataFrame | None, layout: Layout, task: ForecastTask):
        self.source = last_published
        self.layout = layout
        self.task = task
        self._by_id: dict[str, npt.NDArray[np.intp]] | None = None

    def rows(self, uid: str, place: int) -> pd.DataFrame | None:
        source = self.source
        if source is None or source.empty:
            return None
        if self._by_id is None:
            keys = source[ID].astype(str).to_numpy()
            self._by_id = pd.Series(np.arange(len(source))).groupby(keys, sort=False).indices
        found = self._by_id.get(uid)
        if found is None:
            return None
        last = None
        if place >= 0:
            end = self.layout.starts[place] + self.layout.lengths[place] - 1
            last = self.layout.frame[DS].iloc[end]
        return _last_published(uid, source.iloc[found], last, self.task)


def _last_published(
    uid: Any,
    published: pd.DataFrame,
    last: pd.Timestamp | None,
    task: ForecastTask,
) -> pd.DataFrame | None:
    """The published rows of ``uid`` (``published``: its rows of the release) that fall on this
    run's horizon after ``last``, its last history timestamp (None if there are none)."""
    if published.empty:
        return None
    published = published.assign(**{DS: to_naive_utc(published[DS])})
    if last is not None:
        expected = expected_timestamps(pd.Series([last], index=[uid]), task)
        published = published[published[DS].isin(expected[DS])]
    else:  # no history at all: whatever was published is all there is
        published = published.sort_values(DS).head(task.horizon)
    if published.empty:
        return None
    keep = [c for c in published.columns if c in (ID, DS, "yhat") or c.startswith("yhat_")]
    out = published[keep].copy()
    out["_from_release"] = True
    return out.reset_index(drop=True)


def _fill_intervals(
    forecasts: pd.DataFrame,
    selection: Selection,
    layout: Layout,
    levels: Sequence[int],
    task: ForecastTask,
) -> tuple[pd.DataFrame, dict[Any, str]]:
    """Give every row bounds at every level; return where each series' bounds came from.

    ``forecasts`` has every level's columns (NaN where missing) and ``_from_release``; the
    result is sorted by series and time, in the export columns. Rows a model produced get
    calibrated bounds (:mod:`steadycast.forecasting.intervals`) in place of any the model
    gave; rows from the last release keep theirs and only the missing levels are derived.
    """
    columns = [ID, DS, "yhat", *interval_columns(levels), "model"]
    codes, ids = pd.factorize(forecasts[ID].to_numpy(dtype=object), sort=True)
    order = np.lexsort((forecasts[DS].to_numpy(), codes))
    out = forecasts.take(order)
    out.index = pd.RangeIndex(len(out))
    codes = codes[order]
    if not levels:
        return out[columns], dict.fromkeys(ids.tolist(), "model")
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    sizes = np.diff(np.r_[starts, len(codes)])
    step = np.arange(len(codes)) - np.repeat(starts, sizes) + 1
    from_release = out["_from_release"].to_numpy() == True  # noqa: E712 (NaN is not True)
    # A model's rows are recalibrated at every level; a release's keep the levels it has.
    lacking = {}
    for level in levels:
        gap = np.isnan(out[f"yhat_lo_{level}"].to_numpy()) | np.isnan(
            out[f"yhat_hi_{level}"].to_numpy()
        )
        lacking[level] = np.repeat(np.logical_or.reduceat(gap, starts), sizes) | ~from_release
    n_lacking = np.sum([lacking[lv] for lv in levels], axis=0)
    derived = np.full(len(out), "", dtype=object)
    models = out["model"].to_numpy(dtype=object)
    published = ~from_release[starts]
    pairs = pd.MultiIndex.from_arrays(
        [ids[codes[starts]][published].astype(str), models[starts][published]]
    )
    calibration = calibrate(
        selection.forecasts, layout, pairs, task.season_length, task.horizon, levels
    )
    missing = n_lacking > 0
    if missing.any():
        _derive_bounds(
            out, derived, missing, lacking, calibration, layout, ids, codes, step, levels
        )
    keeps_some = from_release & (n_lacking < len(levels))
    base = np.where(keeps_some, "last_published", "")
    labels = [
        f"{b}+{d}" if b and d else b or d
        for b, d in zip(base[starts].tolist(), derived[starts].tolist(), strict=True)
    ]
    return out[columns], dict(zip(ids[codes[starts]].tolist(), labels, strict=True))


def _derive_bounds(
    out: pd.DataFrame,
    derived: npt.NDArray[Any],
    missing: npt.NDArray[np.bool_],
    lacking: dict[int, npt.NDArray[np.bool_]],
    calibration: Calibration | None,
    layout: Layout,
    ids: npt.NDArray[Any],
    codes: npt.NDArray[np.intp],
    step: Ints,
    levels: Sequence[int],
) -> None:
    """Fill, in ``out``, the levels each row lacks: calibrated from the partition's backtest
    errors, or from the series' history when the partition has none; ``derived`` learns which
    source each row's bounds came from."""
    yhat = out["yhat"].to_numpy()
    rows = np.flatnonzero(missing)
    halves = np.full((len(out), len(levels)), np.nan)
    if calibration is not None:
        halves[rows] = calibrated_halves(calibration, layout, ids[codes[rows]], step[rows])
        derived[rows] = "calibrated"
    else:
        halves[rows] = history_halves(layout, ids[codes[rows]], step[rows], levels)
        derived[rows] = "history"
    # Derived lower bounds stop at 0 for series that have never been negative.
    at = pd.Index(layout.ids).get_indexer(ids)
    lowest = (
        np.minimum.reduceat(layout.frame[Y].to_numpy(), layout.starts)
        if len(layout.starts)
        else np.zeros(0)
    )
    nonneg = np.zeros(len(ids), dtype=bool)
    nonneg[at >= 0] = lowest[at[at >= 0]] >= 0
    clip = nonneg[codes]
    for k, level in enumerate(levels):
        lacks = lacking[level]
        half = halves[:, k]
        lo = yhat - half
        lo = np.where(clip & (lo < 0), np.minimum(0.0, yhat), lo)
        lo_col, hi_col = f"yhat_lo_{level}", f"yhat_hi_{level}"
        out[lo_col] = np.where(lacks, lo, out[lo_col].to_numpy())
        out[hi_col] = np.where(lacks, yhat + half, out[hi_col].to_numpy())


def _with_scores(provenance: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """Attach the backtest score of the model actually used, and the selection's reason."""
    table = selection.table.set_index(ID)
    metric = str(table["metric"].iloc[0]) if len(table) else "mase"
    scores = selection.scores
    means = (
        scores[scores["status"] == "ok"].groupby([ID, "model"])[metric].mean()
        if not scores.empty and metric in scores
        else pd.Series(dtype=float)
    )
    provenance["metric"] = metric
    if len(means) and len(provenance):
        keys = pd.MultiIndex.from_arrays([provenance[ID], provenance["model"]])
        provenance["backtest_score"] = means.reindex(keys).to_numpy(dtype=float)
    else:
        provenance["backtest_score"] = [np.nan] * len(provenance)
    provenance["selection_reason"] = provenance[ID].map(table["reason"]).fillna("")
    return provenance[list(PROVENANCE_COLUMNS)]


def _naive_guard(config: PipelineConfig) -> tuple[str, float] | None:
    """The gate's naive benchmark and tolerance, which the selection's pooled check respects:
    a series the partition hands its combination must still pass the gate's rule."""
    rule = config.gate.worse_than_naive
    return (rule.baseline, rule.tolerance) if rule.enabled else None


def _informed(
    pool: Sequence[str], caps: Mapping[str, Capabilities], covariates: Covariates | None
) -> frozenset[str]:
    """The candidates given the run's covariates: those that take them, when there are any."""
    if covariates is None or not covariates.columns:
        return frozenset()
    return frozenset(m for m in pool if m in caps and caps[m].exogenous)


def run_partition(
    history: pd.DataFrame,
    config: PipelineConfig,
    runner: Runner | None,
    last_published: pd.DataFrame | None = None,
    *,
    capabilities: Mapping[str, Capabilities] | None = None,
    covariates: Covariates | None = None,
) -> PartitionResult:
    """Profile -> route -> backtest -> select -> forecast, for one partition of series."""
    task = task_for(config)
    caps = dict(capabilities) if capabilities is not None else _capabilities(config)
    profile = profile_series(history, task.season_length)
    pool = covariate_candidates(config, config.models.candidates)
    routing = route(profile, pool, caps, season_length=task.season_length)
    # A series whose covariates miss part of its horizon is not offered the covariate models.
    missing = missing_future(history, covariates, task)
    routing = route_without(routing, missing, caps)
    runner = with_covariates(runner, covariates, caps)
    result = backtest(
        history,
        routing,
        task,
        windows=config.backtest.windows,
        step=config.backtest.step,
        runner=runner,
        capabilities=caps,
        params=config.models.params,
    )
    selection = select(
        result,
        history,
        metric=config.backtest.metric,
        ensemble_top_k=config.backtest.ensemble_top_k,
        levels=task.levels,
        combination=config.backtest.combination,
        guard=_naive_guard(config),
        informed=_informed(pool, caps, covariates),
        unseen=unseen_conditions(history, covariates, result.forecasts, task),
        trusted=[m for m in config.covariates.models if m in caps and caps[m].exogenous],
    )
    out = forecast_partition(history, config, runner, selection, last_published, capabilities=caps)
    profile = profile.merge(routing, on=ID, how="left")
    return PartitionResult(
        forecasts=out.forecasts,
        provenance=mark_fallbacks(out.provenance, missing),
        scores=out.scores,
        selection=out.selection,
        profile=profile,
    )
