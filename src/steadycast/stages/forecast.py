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

- ``model``: the model's own intervals; for an ensemble, the mean of its members' bounds when
  every member has them (quantile averaging, the rule its backtest coverage was scored with);
- ``backtest``: the model has none (nor, for an ensemble, all of its members): symmetric
  bounds yhat ± q, where q at step k is the empirical quantile (level L, "higher"
  interpolation) of the absolute backtest errors of this series and model at steps 1..k over
  all windows, made non-decreasing in k. Pooling the earlier steps gives a small backtest
  enough errors to take a quantile of; with 2 windows the 95% bound at step 1 is the larger
  of two errors, so expect these intervals to under-cover when windows are few (the backtest
  scores show coverage per model, and the bench reports it per interval source);
- ``history``: no backtest errors for this model and series (a fallback that was not a
  candidate): the quantile of the series' one-step changes times sqrt(k), the random-walk
  growth of the naive forecast's error;
- ``last_published``: taken from the last published forecast where it has them.

Levels are filled one by one: a source that gives some levels keeps them and only the missing
ones are derived (``interval_source`` then reads e.g. "last_published+history"). Derived lower
bounds are clipped at 0 for series that have never been negative.

Plain functions on pandas frames, no I/O and no global state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from steadycast.config import PipelineConfig
from steadycast.errors import ModelError
from steadycast.models.base import Capabilities, ForecastTask
from steadycast.models.validation import expected_timestamps, to_naive_utc, validate_forecast
from steadycast.profiling import profile_series, route
from steadycast.selection import Selection, select
from steadycast.stages.backtest import (
    DS,
    ID,
    Job,
    Runner,
    backtest,
    batches,
    call_models,
    interval_columns,
    model_history,
    model_task_for,
    task_for,
)

__all__ = [
    "LAST_PUBLISHED",
    "PROVENANCE_COLUMNS",
    "PartitionResult",
    "forecast_partition",
    "run_partition",
]

LAST_PUBLISHED = "LastPublished"
FALLBACK_MODELS: tuple[str, ...] = ("SeasonalNaive", "Naive")
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
    members: list[str]
    source: str  # "selected" | "ensemble" | "fallback"


def _capabilities(config: PipelineConfig) -> dict[str, Capabilities]:
    from steadycast.models.registry import available_models

    models = available_models(
        plugins=config.models.plugins, disabled=tuple(config.models.disabled_plugins)
    )
    return {name: getattr(cls, "capabilities", Capabilities()) for name, cls in models.items()}


def _chains(ids: Sequence[Any], table: pd.DataFrame) -> dict[Any, list[_Attempt]]:
    chains: dict[Any, list[_Attempt]] = {}
    for uid in ids:
        attempts: list[_Attempt] = []
        if uid in table.index:
            row = table.loc[uid]
            attempts.append(_Attempt(str(row["model"]), list(row["members"]), str(row["source"])))
            attempts += [_Attempt(m, [m], "fallback") for m in row["fallbacks"]]
        attempts += [_Attempt(m, [m], "fallback") for m in FALLBACK_MODELS]
        seen: set[str] = set()
        unique = []
        for attempt in attempts:
            if attempt.model not in seen:
                seen.add(attempt.model)
                unique.append(attempt)
        chains[uid] = unique
    return chains


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
        selection: from :func:`steadycast.selection.select` on the same partition.
        last_published: the current release's rows (``unique_id, ds, yhat`` and any
            ``yhat_lo_L, yhat_hi_L``), used when every model fails for a series.
        capabilities: per model; read from the registry when not given.
    """
    task = task_for(config)
    levels = list(config.models.levels)
    caps = dict(capabilities) if capabilities is not None else _capabilities(config)
    hist = model_history(history)
    all_ids = pd.unique(history[ID].astype(str))
    by_id = {uid: rows for uid, rows in hist.groupby(ID, sort=False)}
    table = selection.table.set_index(ID)

    empty = [uid for uid in all_ids if uid not in by_id]
    chains = _chains([uid for uid in all_ids if uid in by_id], table)
    done, reasons = _walk(chains, by_id, task, caps, config, runner)

    produced: list[pd.DataFrame] = []
    rows: list[dict[str, Any]] = []
    for uid in all_ids:
        chain = chains.get(uid, [])
        why = "; ".join(reasons.get(uid, []))
        if uid in done:
            attempt, frame = done[uid]
            produced.append(frame.assign(model=attempt.model))
            rows.append(_prov(uid, attempt.model, attempt.source, why, len(frame)))
            continue
        if uid in empty:
            why = "no observed values in the history"
        published = _last_published(uid, last_published, by_id.get(uid), task)
        if published is not None:
            note = f"last published forecast ({len(published)} of {task.horizon} steps)"
            produced.append(published.assign(model=LAST_PUBLISHED))
            reason = f"{why}; {note}" if why else note
            rows.append(_prov(uid, LAST_PUBLISHED, "fallback", reason, len(published)))
        else:
            tail = "no last published forecast" if chain or uid in empty else ""
            reason = "; ".join(p for p in (why, tail) if p)
            rows.append(_prov(uid, "", "none", reason, 0))

    forecasts = (
        pd.concat(produced, ignore_index=True)
        if produced
        else pd.DataFrame(columns=[ID, DS, "yhat", "model"])
    )
    forecasts, interval_source = _fill_intervals(forecasts, selection, hist, levels)
    provenance = pd.DataFrame(rows, columns=list(PROVENANCE_COLUMNS))
    provenance["interval_source"] = provenance[ID].map(interval_source).fillna("")
    provenance = _with_scores(provenance, selection)
    columns = [ID, DS, "yhat", *interval_columns(levels), "model"]
    forecasts = forecasts[columns].sort_values([ID, DS], kind="stable").reset_index(drop=True)
    return PartitionResult(
        forecasts=forecasts,
        provenance=provenance,
        scores=selection.scores,
        selection=selection.table,
    )


def _prov(uid: Any, model: str, source: str, reason: str, steps: int) -> dict[str, Any]:
    return {
        ID: uid,
        "model": model,
        "source": source,
        "fallback_reason": reason,
        "steps": steps,
    }


def _walk(
    chains: dict[Any, list[_Attempt]],
    by_id: dict[Any, pd.DataFrame],
    task: ForecastTask,
    caps: Mapping[str, Capabilities],
    config: PipelineConfig,
    runner: Runner | None,
) -> tuple[dict[Any, tuple[_Attempt, pd.DataFrame]], dict[Any, list[str]]]:
    """Rounds of model calls: each round moves every unfinished series one step down its chain.

    Returns the series that got a forecast (with the attempt that gave it) and, per series, the
    sentences saying which attempts failed and why, in chain order.
    """
    position = dict.fromkeys(chains, 0)
    cache: dict[tuple[str, Any], pd.DataFrame | str] = {}
    done: dict[Any, tuple[_Attempt, pd.DataFrame]] = {}
    reasons: dict[Any, list[str]] = {uid: [] for uid in chains}
    pending = [uid for uid in chains if chains[uid]]
    while pending:
        need: dict[str, list[Any]] = {}
        for uid in pending:
            for member in chains[uid][position[uid]].members:
                if (member, uid) not in cache:
                    need.setdefault(member, []).append(uid)
        cache.update(_run_round(need, by_id, task, caps, config, runner))
        still: list[Any] = []
        for uid in pending:
            attempt = chains[uid][position[uid]]
            results = [cache[(m, uid)] for m in attempt.members]
            problems = [
                (m, r) for m, r in zip(attempt.members, results, strict=True) if isinstance(r, str)
            ]
            if not problems:
                frames = [r for r in results if isinstance(r, pd.DataFrame)]
                done[uid] = (attempt, _combine(frames, task.levels))
                continue
            if len(attempt.members) == 1:
                reasons[uid].append(f"{attempt.model} failed: {problems[0][1]}")
            else:
                detail = "; ".join(f"{m}: {r}" for m, r in problems)
                reasons[uid].append(f"{attempt.model} failed: member {detail}")
            position[uid] += 1
            if position[uid] < len(chains[uid]):
                still.append(uid)
        pending = still
    return done, reasons


def _run_round(
    need: dict[str, list[Any]],
    by_id: dict[Any, pd.DataFrame],
    task: ForecastTask,
    caps: Mapping[str, Capabilities],
    config: PipelineConfig,
    runner: Runner | None,
) -> dict[tuple[str, Any], pd.DataFrame | str]:
    """Call each needed model once (in chunks for slow ones) on its series; validate.

    Returns, per (model, series), the validated forecast rows or the reason it failed.
    """
    jobs: list[Job] = []
    job_ids: list[list[Any]] = []
    for model, wanted in sorted(need.items()):
        model_task = model_task_for(task, caps.get(model))
        for chunk in batches(wanted, caps.get(model)):
            batch = pd.concat([by_id[u] for u in chunk], ignore_index=True)
            jobs.append((model, dict(config.models.params.get(model, {})), batch, model_task))
            job_ids.append(chunk)
    results: dict[tuple[str, Any], pd.DataFrame | str] = {}
    for job, ids, output in zip(jobs, job_ids, call_models(jobs, runner), strict=True):
        model, _params, batch, model_task = job
        if isinstance(output, ModelError):
            results.update({(model, uid): output.problem for uid in ids})
            continue
        valid, bad = validate_forecast(output, batch, model_task, model)
        groups = {uid: rows for uid, rows in valid.groupby(ID, sort=False)}
        for uid in ids:
            results[(model, uid)] = groups.get(uid, str(bad.get(uid, "no forecast returned")))
    return results


def _combine(frames: list[pd.DataFrame], levels: Sequence[int]) -> pd.DataFrame:
    """One member: its rows. Several: the mean forecast, and the mean of each bound where every
    member gave it (quantile averaging); other bounds are left for residual intervals."""
    columns = [ID, DS, "yhat", *(c for c in interval_columns(levels) if c in frames[0].columns)]
    if len(frames) == 1:
        return frames[0][columns].reset_index(drop=True)
    present = [c for c in columns[2:] if all(c in f.columns for f in frames)]
    stacked = pd.concat([f[[ID, DS, *present]] for f in frames], ignore_index=True)
    grouped = stacked.groupby([ID, DS], sort=True)[present]
    mean = grouped.mean()
    return mean.where(grouped.count().eq(len(frames))).reset_index()


def _last_published(
    uid: Any,
    last_published: pd.DataFrame | None,
    rows: pd.DataFrame | None,
    task: ForecastTask,
) -> pd.DataFrame | None:
    """The published rows of ``uid`` that fall on this run's horizon (None if there are none)."""
    if last_published is None or last_published.empty:
        return None
    published = last_published[last_published[ID].astype(str) == uid]
    if published.empty:
        return None
    published = published.assign(**{DS: to_naive_utc(published[DS])})
    if rows is not None and not rows.empty:
        last = pd.Series([rows[DS].iloc[-1]], index=[uid])
        published = published[published[DS].isin(expected_timestamps(last, task)[DS])]
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
    hist: pd.DataFrame,
    levels: Sequence[int],
) -> tuple[pd.DataFrame, dict[Any, str]]:
    """Give every row bounds at every level; return where each series' bounds came from."""
    bounds = interval_columns(levels)
    out = forecasts.copy()
    for col in bounds:
        if col not in out.columns:
            out[col] = np.nan
    if out.empty or not levels:
        return out, {uid: "model" for uid in out.get(ID, [])}
    out = out.sort_values([ID, DS], kind="stable").reset_index(drop=True)
    out["step"] = out.groupby(ID, sort=False).cumcount() + 1
    # A level is derived for a whole series when any of its rows lacks that level's bounds.
    lacking = {
        lv: out[[f"yhat_lo_{lv}", f"yhat_hi_{lv}"]]
        .isna()
        .any(axis=1)
        .groupby(out[ID])
        .transform("any")
        for lv in levels
    }
    n_lacking = np.sum([m.to_numpy() for m in lacking.values()], axis=0)
    missing = n_lacking > 0
    from_release = (
        out["_from_release"].eq(True).to_numpy()
        if "_from_release" in out
        else np.zeros(len(out), dtype=bool)
    )
    base = np.where(from_release, "last_published", "model")
    derived = pd.Series("", index=out.index)
    if missing.any():
        half_cols = [f"half_{lv}" for lv in levels]
        halves = pd.DataFrame(np.nan, index=out.index, columns=half_cols)
        need = out.loc[missing, [ID, "model", "step"]]
        halves.loc[missing, half_cols] = _backtest_halves(selection, need, levels).to_numpy()
        derived[missing] = "backtest"
        no_bt = missing & halves[half_cols[0]].isna().to_numpy()
        if no_bt.any():
            from_history = _history_halves(hist, out.loc[no_bt, [ID, "step"]], levels)
            halves.loc[no_bt, half_cols] = from_history.to_numpy()
            derived[no_bt] = "history"
        nonneg = hist.groupby(ID)["y"].min().ge(0)
        clip = out[ID].map(nonneg).eq(True)
        for level in levels:
            rows = lacking[level].to_numpy()
            half = halves[f"half_{level}"]
            lo = out["yhat"] - half
            lo = lo.where(~clip, lo.clip(lower=0))
            out.loc[rows, f"yhat_lo_{level}"] = lo[rows]
            out.loc[rows, f"yhat_hi_{level}"] = (out["yhat"] + half)[rows]
    keeps_some = n_lacking < len(levels)
    labels = [
        "+".join(p for p in (b if keep else "", d) if p)
        for b, keep, d in zip(base, keeps_some, derived, strict=True)
    ]
    per_series = pd.Series(labels, index=out.index).groupby(out[ID]).first()
    return out.drop(columns=["step"]), per_series.to_dict()


def _backtest_halves(
    selection: Selection, need: pd.DataFrame, levels: Sequence[int]
) -> pd.DataFrame:
    """Half-widths from the absolute backtest errors of steps <= k (see the module docstring)."""
    fc = selection.forecasts
    result = pd.DataFrame(index=need.index, columns=[f"half_{lv}" for lv in levels], dtype=float)
    if fc.empty:
        return result
    pairs = need[[ID, "model"]].drop_duplicates()
    errors = fc.merge(pairs, on=[ID, "model"], how="inner")
    if errors.empty:
        return result
    errors = errors.assign(abs_error=(errors["y"] - errors["yhat"]).abs())
    errors = errors.sort_values([ID, "model", "step", "window"], kind="stable")
    grouped = errors.groupby([ID, "model"], sort=False)["abs_error"]
    table = errors[[ID, "model", "step"]].copy()
    for level in levels:
        expanding = grouped.expanding().quantile(level / 100, interpolation="higher")
        table[f"half_{level}"] = expanding.reset_index(level=[0, 1], drop=True)
    table = table.groupby([ID, "model", "step"], sort=True).last()
    table = table.groupby(level=[0, 1], sort=False).cummax().reset_index()
    merged = need.reset_index().merge(table, on=[ID, "model", "step"], how="left")
    return merged.set_index("index")[[f"half_{lv}" for lv in levels]].reindex(need.index)


def _history_halves(hist: pd.DataFrame, need: pd.DataFrame, levels: Sequence[int]) -> pd.DataFrame:
    """Half-widths from one-step changes of the history, grown by sqrt(step)."""
    changes = hist.assign(change=hist.groupby(ID, sort=False)["y"].diff().abs())
    result = pd.DataFrame(index=need.index)
    for level in levels:
        q = changes.groupby(ID)["change"].quantile(level / 100, interpolation="higher").fillna(0.0)
        result[f"half_{level}"] = need[ID].map(q).fillna(0.0) * np.sqrt(need["step"])
    return result


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
    keys = list(zip(provenance[ID], provenance["model"], strict=True))
    provenance["metric"] = metric
    provenance["backtest_score"] = [float(means.get(k, np.nan)) for k in keys]
    provenance["selection_reason"] = provenance[ID].map(table["reason"]).fillna("")
    return provenance[list(PROVENANCE_COLUMNS)]


def run_partition(
    history: pd.DataFrame,
    config: PipelineConfig,
    runner: Runner | None,
    last_published: pd.DataFrame | None = None,
    *,
    capabilities: Mapping[str, Capabilities] | None = None,
) -> PartitionResult:
    """Profile -> route -> backtest -> select -> forecast, for one partition of series."""
    task = task_for(config)
    caps = dict(capabilities) if capabilities is not None else _capabilities(config)
    profile = profile_series(history, task.season_length)
    routing = route(profile, config.models.candidates, caps, season_length=task.season_length)
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
    )
    out = forecast_partition(history, config, runner, selection, last_published, capabilities=caps)
    profile = profile.merge(routing, on=ID, how="left")
    return PartitionResult(
        forecasts=out.forecasts,
        provenance=out.provenance,
        scores=out.scores,
        selection=out.selection,
        profile=profile,
    )
