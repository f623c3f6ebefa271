"""Future-known covariates joined to the series, and the frames covariate-aware models get.

A model declaring ``Capabilities.exogenous`` receives its history with the covariate columns
after ``y`` and, appended to each series, its ``horizon`` future rows (``y`` NaN, covariates
filled); its task names the columns (``ForecastTask.covariates``). Every other model gets the
frame it always got. In a backtest window the "future" covariates are the ones recorded for
those times (what a perfect weather forecast would have said); in the final forecast they are
the covariate rows dated after the history (a weather forecast delivered as covariate rows).

A series whose covariate is missing at any step of its horizon is not offered the covariate
models: it is forecast by the others, and its provenance says so (``mark_fallbacks``).

Plain functions on frames, no I/O: the same code runs under any engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from steadycast.config import PipelineConfig
from steadycast.errors import ModelError
from steadycast.models.base import BacktestTask, Capabilities, ForecastTask
from steadycast.models.validation import expected_timestamps

__all__ = [
    "Covariates",
    "candidates",
    "covariate_fallbacks",
    "exogenous_frame",
    "for_series",
    "mark_fallbacks",
    "missing_future",
    "route_without",
    "unseen_conditions",
    "unseen_series",
    "with_covariates",
]

ID, DS, Y = "unique_id", "ds", "y"
COVARIATE_ID = "covariate_id"

Job = tuple[str, dict[str, Any], pd.DataFrame, ForecastTask]

# How a fallback for want of covariates starts its reason (the run record looks for it).
_MISSING = "covariate "

# The share of a forecast's steps whose covariate lies outside every value its backtest windows
# had, above which the backtest is no judge of that forecast (``unseen_conditions``). A few
# hours out of a week move a week's error little; a day in seven (a first heat wave, a holiday
# the windows did not have) is where models that ignore the covariate fail.
UNSEEN_SHARE = 0.10
# How the clause of such a series ends (the run record looks for it in the selection's reason).
_UNSEEN = "the range of its backtest windows"


@dataclass(frozen=True)
class Covariates:
    """The covariates of a partition's series: ``unique_id, ds`` and one column each."""

    frame: pd.DataFrame
    columns: tuple[str, ...]


def for_series(
    stored: pd.DataFrame | None, ids: Iterable[str], cfg: PipelineConfig
) -> Covariates | None:
    """The covariate rows of each of ``ids``: its ``series_map`` entry, else the covariate
    series with its own id, else ``default_id``; None when the pipeline declares none."""
    columns = tuple(cfg.covariates.columns)
    if not columns or stored is None:
        return None
    known = set(stored[COVARIATE_ID].unique().tolist())
    mapping = cfg.covariates.series_map
    default = cfg.covariates.default_id
    pairs = []
    for uid in dict.fromkeys(str(i) for i in ids):
        source = mapping.get(uid) or (uid if uid in known else default)
        if source:
            pairs.append((uid, source))
    link = pd.DataFrame(pairs, columns=[ID, COVARIATE_ID])
    frame = link.merge(stored, on=COVARIATE_ID, how="inner").drop(columns=[COVARIATE_ID])
    frame = frame.sort_values([ID, DS], kind="stable").reset_index(drop=True)
    return Covariates(frame[[ID, DS, *columns]], columns)


def candidates(cfg: PipelineConfig, names: Sequence[str]) -> list[str]:
    """The candidates of a run: ``names`` and, when covariates are declared, the covariate
    models of ``[covariates] models``."""
    if not cfg.covariates.columns:
        return list(names)
    return [*names, *(m for m in cfg.covariates.models if m not in names)]


def missing_future(
    history: pd.DataFrame, covariates: Covariates | None, task: ForecastTask
) -> dict[str, str]:
    """Series whose covariates do not cover every step of their horizon, with why."""
    if covariates is None or history.empty:
        return {}
    joined = _horizon(history, covariates, task)
    reasons: dict[str, str] = {}
    for column in covariates.columns:
        gaps = joined[joined[column].isna()]
        for uid, rows in gaps.groupby(ID, sort=True):
            first = pd.Timestamp(rows[DS].min()).isoformat()
            reasons.setdefault(
                str(uid),
                f"{_MISSING}{column!r} is missing at {len(rows)} of {task.horizon} horizon "
                f"steps (first {first}); forecast by the models without covariates",
            )
    return reasons


def _horizon(history: pd.DataFrame, covariates: Covariates, task: ForecastTask) -> pd.DataFrame:
    """``unique_id, ds, step`` of each series' horizon with its covariates (NaN where none)."""
    last = history.dropna(subset=[Y]).groupby(ID, sort=True)[DS].max()
    return expected_timestamps(last, task).merge(covariates.frame, on=[ID, DS], how="left")


def unseen_conditions(
    history: pd.DataFrame,
    covariates: Covariates | None,
    windows: pd.DataFrame,
    task: ForecastTask,
) -> dict[str, str]:
    """Series whose horizon takes a covariate outside the range it had over the series'
    backtest windows (``windows``: their held-out ``unique_id, ds``) at more than
    ``UNSEEN_SHARE`` of its steps, with a clause saying which and where.

    Backtest windows judge the models in the conditions they covered: three mild weeks of May
    rank a model that ignores the temperature level with the weather model, and the first hot
    week then costs it twice the error. Such series are the selection's to treat apart."""
    if covariates is None or history.empty or windows.empty:
        return {}
    future = _horizon(history, covariates, task)
    held = windows[[ID, DS]].drop_duplicates()
    seen = held.merge(covariates.frame, on=[ID, DS], how="inner")
    clauses: dict[str, list[str]] = {}
    for column in covariates.columns:
        bounds = seen.groupby(ID, sort=True)[column].agg(["min", "max"])
        low = future[ID].map(bounds["min"]).to_numpy(dtype=float)
        high = future[ID].map(bounds["max"]).to_numpy(dtype=float)
        value = future[column].to_numpy(dtype=float)
        out = pd.Series((value < low) | (value > high), index=future.index)
        share = out.groupby(future[ID], sort=True).mean()
        for uid in share.index[share.to_numpy() > UNSEEN_SHARE]:
            lo, hi = bounds.loc[uid, "min"], bounds.loc[uid, "max"]
            clauses.setdefault(str(uid), []).append(
                f"{share[uid]:.0%} of its horizon has {column} outside {lo:.4g} to {hi:.4g}, "
                + _UNSEEN
            )
    return {uid: "; ".join(parts) for uid, parts in clauses.items()}


def route_without(
    routing: pd.DataFrame, missing: Mapping[str, str], capabilities: Mapping[str, Capabilities]
) -> pd.DataFrame:
    """Routing with the covariate models taken from the series in ``missing``."""
    if not missing:
        return routing
    exogenous = {m for m, c in capabilities.items() if c.exogenous}
    hit = routing[ID].astype(str).isin(list(missing))
    routing = routing.copy()
    routing.loc[hit, "models"] = pd.Series(
        [[m for m in models if m not in exogenous] for models in routing.loc[hit, "models"]],
        index=routing.index[hit],
        dtype=object,
    )
    return routing


def mark_fallbacks(provenance: pd.DataFrame, missing: Mapping[str, str]) -> pd.DataFrame:
    """Provenance of the series forecast without their covariates: a fallback, and why."""
    if not missing or provenance.empty:
        return provenance
    provenance = provenance.copy()
    hit = provenance[ID].astype(str).isin(list(missing))
    why = provenance.loc[hit, ID].astype(str).map(missing)
    earlier = provenance.loc[hit, "fallback_reason"].fillna("").astype(str)
    provenance.loc[hit, "fallback_reason"] = [
        w if not e else f"{w}; {e}" for w, e in zip(why, earlier, strict=True)
    ]
    provenance.loc[hit & (provenance["source"] != "none"), "source"] = "fallback"
    return provenance


def exogenous_frame(
    history: pd.DataFrame, covariates: Covariates, task: ForecastTask
) -> tuple[pd.DataFrame, ForecastTask]:
    """The frame a covariate-aware model gets: history with the covariates after ``y``, then
    each series' ``horizon`` future rows (``y`` NaN). A gap in a series' covariate history is
    filled from its neighbours; a series with no covariate at all, or a future step without one,
    is left out (the model is not asked for it, so it falls back). A model asked for a whole
    backtest at once (``BacktestTask``) cuts its own windows from the history: it gets no future
    rows."""
    columns = list(covariates.columns)
    with_future = not isinstance(task, BacktestTask)
    past = history[[ID, DS, Y]].merge(covariates.frame, on=[ID, DS], how="left")
    past[columns] = past.groupby(ID, sort=False)[columns].ffill()
    past[columns] = past.groupby(ID, sort=False)[columns].bfill()
    last = history.groupby(ID, sort=False)[DS].max()
    future = expected_timestamps(last, task).drop(columns=["step"])
    future = future.merge(covariates.frame, on=[ID, DS], how="left")
    future.insert(2, Y, np.nan)
    bad = set(past.loc[past[columns].isna().any(axis=1), ID])
    if with_future:
        bad |= set(future.loc[future[columns].isna().any(axis=1), ID])
    frame = pd.concat([past, future], ignore_index=True) if with_future else past
    if bad:
        frame = frame[~frame[ID].isin(list(bad))]
    frame = frame.sort_values([ID, DS], kind="stable").reset_index(drop=True)
    return frame, replace(task, covariates=tuple(columns))


class CovariateRunner:
    """A runner that hands covariate-aware models their covariates and passes every job on to
    the runner it wraps (or runs it in this process, as ``call_models`` does without one)."""

    def __init__(
        self, inner: Any, covariates: Covariates, capabilities: Mapping[str, Capabilities]
    ) -> None:
        self.inner = inner
        self.covariates = covariates
        self.exogenous = {m for m, c in capabilities.items() if c.exogenous}

    def _job(self, job: Job) -> Job:
        name, params, history, task = job
        if name not in self.exogenous:
            return job
        frame, task = exogenous_frame(history, self.covariates, task)
        return name, params, frame, task

    def map(self, jobs: Iterable[Job]) -> Iterator[pd.DataFrame | ModelError]:
        from steadycast.forecasting.backtest import _run_inline

        ready = (self._job(job) for job in jobs)
        if self.inner is None:
            return (_run_inline(job) for job in ready)
        return iter(self.inner.map(ready))

    def usage(self) -> Any:
        return self.inner.usage()


def with_covariates(
    runner: Any, covariates: Covariates | None, capabilities: Mapping[str, Capabilities] | None
) -> Any:
    """``runner`` itself when there are no covariates, else one that adds them to the jobs of
    covariate-aware models."""
    if covariates is None:
        return runner
    return CovariateRunner(runner, covariates, capabilities or {})


def covariate_fallbacks(provenance: pd.DataFrame, shown: int = 20) -> dict[str, Any]:
    """For the forecast stage's record: the series forecast without their covariates, and why
    (the first ``shown`` of them); empty when there are none."""
    hit = _where(provenance, "fallback_reason", lambda r: r.str.startswith(_MISSING))
    return _counted(
        hit, "fallback_reason", ("covariate_fallback_series", "covariate_fallbacks"), shown
    )


def unseen_series(provenance: pd.DataFrame, shown: int = 20) -> dict[str, Any]:
    """For the forecast stage's record: the series forecast in covariate values their backtest
    windows never had, and what the selection made of it (the first ``shown`` of them); empty
    when there are none."""
    hit = _where(provenance, "selection_reason", lambda r: r.str.contains(_UNSEEN, regex=False))
    return _counted(
        hit, "selection_reason", ("unseen_conditions_series", "unseen_conditions"), shown
    )


def _where(
    provenance: pd.DataFrame, column: str, matches: Callable[[pd.Series], pd.Series]
) -> pd.DataFrame:
    """The provenance rows whose ``column`` (a reason) ``matches``."""
    if provenance.empty or column not in provenance:
        return provenance.iloc[:0]
    return provenance[matches(provenance[column].fillna("").astype(str))]


def _counted(hit: pd.DataFrame, column: str, keys: tuple[str, str], shown: int) -> dict[str, Any]:
    """``{count key: how many, list key: the first shown series and their reason}``, or
    nothing when there are none."""
    if hit.empty:
        return {}
    first = hit.head(shown)
    return {
        keys[0]: len(hit),
        keys[1]: dict(zip(first[ID].astype(str), first[column].astype(str), strict=True)),
    }
