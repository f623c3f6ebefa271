"""Choose a model (or an ensemble) per series from its backtest scores, and say why.

The rule, per series:

1. A candidate qualifies when it scored in every backtest window of the series; a model that
   failed in any window is left out (a model that crashes sometimes is not trusted to run
   unattended), its failure stays visible in the scores.
2. Candidates are ranked by the configured metric, averaged over windows (lower is better).
3. Ties go to the simpler model. Two scores tie when they differ by at most ``REL_TOL`` (1%)
   of the larger one (plus ``ABS_TOL`` so that two perfect scores of 0 tie): backtest noise is
   larger than that, and a simpler model is cheaper, more robust and easier to explain.
   Simplicity is the fixed ``COMPLEXITY`` order; models not in it (plugins) come after the
   built-ins, alphabetically, and an ensemble is the most complex of all.
4. With ``ensemble_top_k >= 2`` and at least two qualified candidates, a combination of the
   top k (in rank order) is scored on the stored window forecasts, with no refit. The
   ``combination`` says which: ``mean``; ``median`` (element-wise, so one wildly wrong member
   cannot drag it); ``trimmed`` (the mean after dropping the highest and the lowest member at
   each point). With fewer than three members the median and the trimmed mean are the mean,
   and the ensemble is named as one. Interval bounds are combined the same way, and only where
   every member gave the bound (the median and the trimmed mean keep lower <= point <= upper
   because order statistics keep the members' order).
   The combination is chosen unless it scores worse than the best single model by more than
   the tie tolerance (``ENSEMBLE_ON_TIE``): out of sample a combination averages away more of
   its members' errors than a few backtest windows show. On 120 M4 Weekly development
   series, taking the combination on a tie lowered OWA in 21 of 24 settings with the weekly
   pool (mean, median, trimmed; top 3, 4, 5, 8; 2 or 3 windows; bench/combinations.py), the
   mean of the top 3 over 3 windows from 0.656 to 0.647, and in 15 of 18 with the earlier
   default candidates.
   With ``ensemble_on_tie=False`` it must beat the best single model by more than the
   tolerance, and a tie goes to the single model, as before.
   **Pooled check** (``pooled=True``, the default, and only with ``ensemble_on_tie``): one
   series' few windows are a noisy judge, so the partition judges too. When the series'
   combinations, pooled over the partition, score within ``POOLED_REL_TOL`` (10%) of every
   single model that scored on at least half of those series (each compared on the series
   it scored on), every series with a combination takes it, even where its own windows
   favour a single model, unless its combination scored more than ``POOLED_SERIES_TOL``
   (25%) worse than its best single model (a series its combination clearly fails, as in a
   partition of series that need different models, keeps its own choice). On development
   halves (3 windows, mean of the top 3; the window forecasts of bench/accuracy.py):
   GEFCom2012 hourly, each hidden week its own partition of 10 zones, OWA 0.847 per series,
   0.835 with the pooled check at 1%, 0.757 at 10% (best single model 0.842; the pooled
   combinations scored 0.90 to 1.09 times the best single model's backtest, and won out of
   sample); M4 Weekly 0.701 -> 0.679 (best single 0.754; ratio 0.90); SGSC smart meters
   unchanged at 0.720 (ratio 1.15: per-series choice, which beats the best single model,
   Card, 0.733; at 15% the check took the combination there and scored 0.845). The series
   limit at 10%, 25%, 50% and none: GEFCom 0.800, 0.757, 0.761, 0.761; M4 0.690, 0.679,
   0.681, 0.688.
   **Pooled champion** (the mirror, under the same conditions): when the single model with
   the lowest pooled score (among those scored on at least half of the series) beats the
   series' combinations, pooled over the same series, by more than ``POOLED_REL_TOL``, every
   series takes that model, on the same terms (within ``POOLED_SERIES_TOL`` of its best single
   model, and within the gate's naive limit); a series that chose it on its own windows keeps
   its own reason. On the DEV halves: smart meters 0.723 -> 0.719 (the combinations pooled
   1.15 times Card's backtest, so every household but one takes Card); M4 Weekly and GEFCom
   without temperatures, where the combinations win pooled, unchanged.
   **Pooled pair**: the champion is then paired with the runner-up (the single model with
   the next lowest pooled score): when the mean of the two, pooled over the partition, beats
   the champion alone in every backtest window, every series takes that pair on the same
   terms. Every window, because a partition's series share their conditions and each window
   is one draw. On the DEV halves: generated hourly meters 0.738 -> 0.720 (LightGBM paired
   with Card, better in all three windows; LightGBM alone 0.738); smart meters unchanged (the
   pair scored 1.09 times Card); GEFCom2012 with temperatures unchanged (the pair won on
   average in two weeks, and lost a window in each: taken on the average, 0.457 -> 0.464).
   **Covariates**: a model given the run's covariates (a temperature, a holiday flag) is not
   averaged with models that were not on the benefit of the doubt: against such a model the
   slack of both pooled checks is the tie tolerance (``REL_TOL``), not ``POOLED_REL_TOL``. The
   combinations' advantage is that similar models' errors average out; a model that ignores
   the weather has no such errors to cancel, only the weather's effect to dilute. On GEFCom2012
   DEV with temperatures and a year of history the 10% slack took the combinations (OWA 0.559
   against CovariateRegression alone 0.497 on the hidden weeks; with three years, in the first
   hidden week its pooled backtest was 5% better than the combinations', which the 10% let
   through); with the rule and every zone's whole history, 0.504 (CovariateRegression alone
   0.484, the organisers' benchmark 0.540).
   **Conditions the backtest never had** (``unseen``, computed by
   ``covariates.unseen_conditions``): a series whose horizon has a covariate outside the range
   of its backtest windows at more than a tenth of its steps takes the best-ranked of the
   pipeline's covariate models (``trusted``), whatever the rest of the rule says, unless that
   model backtests worse than the gate's naive limit. Its windows ranked the models in other
   conditions: on GEFCom2012 the three mild weeks before a first hot week favoured the
   combinations, which then scored twice CovariateRegression's error.
5. The rest of the ranking is the fallback chain for the forecast stage.

Ensemble names say their members, simplest first, and their combination:
``Ensemble(A+B+C)`` is the mean, ``Ensemble(median:A+B+C)`` the median,
``Ensemble(trimmed:A+B+C)`` the trimmed mean (:func:`ensemble_name`,
:func:`ensemble_members`, :func:`ensemble_combination` read and write them; :func:`combine`
is the one place the combination is computed, for the backtest and the forecast stage alike).

Series that could not be backtested (too short) or whose candidates all failed get the
simplest routed model, and the reason says so.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from steadycast.forecasting._segments import (
    NAT,
    Layout,
    RunningMean,
    factorize_runs,
    rows_up_to,
)
from steadycast.forecasting.backtest import (
    ID,
    SCORE_COLUMNS,
    BacktestResult,
    interval_columns,
    model_layout,
)
from steadycast.forecasting.metrics import (
    Metric,
    block_scores,
    coverage,
    metric_name,
    series_scales,
)
from steadycast.forecasting.metrics import mase as mase_metric
from steadycast.forecasting.metrics import rmsse as rmsse_metric
from steadycast.forecasting.metrics import smape as smape_metric

__all__ = [
    "ABS_TOL",
    "COMBINATIONS",
    "COMPLEXITY",
    "ENSEMBLE_PREFIX",
    "POOLED_ENSEMBLE",
    "REL_TOL",
    "TABLE_COLUMNS",
    "Selection",
    "combine",
    "complexity_rank",
    "ensemble_combination",
    "ensemble_members",
    "ensemble_name",
    "select",
]

REL_TOL = 1e-2
ABS_TOL = 1e-9

# Simplest first. Fixed, so the same scores always give the same choice on any engine.
COMPLEXITY: tuple[str, ...] = (
    "Naive",
    "FastNaive",
    "HistoricAverage",
    "FastHistoricAverage",
    "SeasonalNaive",
    "FastSeasonalNaive",
    "WindowAverage",
    "FastWindowAverage",
    "SeasonalWindowAverage",
    "FastSeasonalWindowAverage",
    "SES",
    "FastSES",
    "CrostonOptimized",
    "IMAPA",
    "AutoTheta",
    "DynamicOptimizedTheta",
    "AutoETS",
    "AutoCES",
    "MSTL",
    "AutoARIMA",
    "LightGBM",
)

ENSEMBLE_PREFIX = "Ensemble("

# How an ensemble combines its members (``BacktestConfig.combination``).
COMBINATIONS: tuple[str, ...] = ("mean", "median", "trimmed")

# Columns of ``Selection.table``.
TABLE_COLUMNS = (
    "unique_id",
    "model",
    "source",
    "members",
    "fallbacks",
    "metric",
    "score",
    "windows",
    "candidates",
    "reason",
)

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

_METRICS: dict[str, Metric] = {"mase": mase_metric, "smape": smape_metric, "rmsse": rmsse_metric}
_LABEL = {"mase": "MASE", "smape": "sMAPE", "rmsse": "RMSSE"}
_COMBINATION_WORDS = {"mean": "mean", "median": "median", "trimmed": "trimmed mean"}

# Whether a combination that ties with the best single model is chosen (see the docstring).
ENSEMBLE_ON_TIE = True
# Whether the partition's pooled scores can make every series take its combination.
POOLED_ENSEMBLE = True
# How much worse, relative, the pooled combinations may score than a single model and still be
# taken (see the docstring).
POOLED_REL_TOL = 0.1
# How much worse, relative, a series' own combination may score than its best single model
# and still be taken on the partition's verdict: a series its combination clearly fails keeps
# its own choice.
POOLED_SERIES_TOL = 0.25


def _tag(combination: str, n_members: int) -> str:
    """The combination's mark inside an ensemble name: none for the mean, and none below
    three members, where the median and the trimmed mean are the mean."""
    if combination not in COMBINATIONS:
        raise ValueError(f"combination {combination!r} is not one of {', '.join(COMBINATIONS)}")
    return "" if combination == "mean" or n_members < 3 else f"{combination}:"


def ensemble_name(members: Sequence[str], combination: str = "mean") -> str:
    """The model name an ensemble gets in scores, forecasts and provenance.

    Members are listed simplest first, so the same ensemble always has the same name; the
    combination is marked unless it is the mean (``Ensemble(median:A+B+C)``).
    """
    listed = "+".join(sorted(members, key=complexity_rank))
    return f"{ENSEMBLE_PREFIX}{_tag(combination, len(members))}{listed})"


def _inside(name: str) -> str | None:
    """What an ensemble name holds between its parentheses, or None for a single model."""
    if name.startswith(ENSEMBLE_PREFIX) and name.endswith(")"):
        return name[len(ENSEMBLE_PREFIX) : -1]
    return None


def ensemble_members(name: str) -> list[str]:
    """The member models of an ensemble name, or ``[name]`` for a single model."""
    inside = _inside(name)
    if inside is None:
        return [name]
    tag, colon, listed = inside.partition(":")
    return (listed if colon and tag in COMBINATIONS else inside).split("+")


def ensemble_combination(name: str) -> str:
    """How an ensemble name combines its members: "mean", "median" or "trimmed" (a single
    model, its own forecast, counts as the mean of one)."""
    inside = _inside(name) or ""
    tag, colon, _ = inside.partition(":")
    return tag if colon and tag in COMBINATIONS else "mean"


def combine(stacked: Floats, combination: str, sizes: Ints | None = None) -> Floats:
    """The members' forecasts combined: ``stacked`` holds one member per row of axis 0.

    ``sizes`` (broadcast to ``stacked.shape[1:]``) is how many members each point has when
    groups of different sizes are stacked together, the rows past a group's size NaN; by
    default every row is a member. A point is NaN unless every member has it. The mean adds
    the members Kahan-compensated in row order (the bits pandas' mean gives); the median and
    the trimmed mean apply from three members up and are the mean below.
    """
    if combination not in COMBINATIONS:
        raise ValueError(f"combination {combination!r} is not one of {', '.join(COMBINATIONS)}")
    width = stacked.shape[0]
    shape = stacked.shape[1:]
    n = np.broadcast_to(np.asarray(width if sizes is None else sizes, dtype=np.int64), shape)
    running = RunningMean(shape)
    for member in stacked:
        running.add(member)
    out = running.mean()
    complete = running.count == n
    robust = complete & (n >= 3)
    if combination != "mean" and bool(robust.any()):
        ordered = np.sort(stacked, axis=0)  # NaN (no member) sorts last
        rank = np.arange(width).reshape((width,) + (1,) * len(shape))
        if combination == "median":
            low = np.take_along_axis(ordered, ((n - 1) // 2)[None], axis=0)[0]
            high = np.take_along_axis(ordered, (n // 2)[None], axis=0)[0]
            values = (low + high) / 2
        else:
            kept = (rank >= 1) & (rank <= n - 2)
            with np.errstate(invalid="ignore", divide="ignore"):
                values = np.where(kept, ordered, 0.0).sum(axis=0) / (n - 2)
        out[robust] = values[robust]
    out[~complete] = np.nan
    result: Floats = out
    return result


def complexity_rank(model: str) -> tuple[int, str]:
    """Sort key: lower is simpler (see ``COMPLEXITY``)."""
    if model.startswith(ENSEMBLE_PREFIX):
        return (len(COMPLEXITY) + 2, model)
    if model in COMPLEXITY:
        return (COMPLEXITY.index(model), "")
    return (len(COMPLEXITY) + 1, model)


@dataclass(frozen=True)
class Selection:
    """The choice per series, plus what the forecast stage needs to act on it.

    ``table``: one row per series: ``unique_id, model`` (chosen, an ensemble name for an
    ensemble), ``source`` ("selected" | "ensemble"), ``members`` (models to fit),
    ``fallbacks`` (qualified single models in rank order after the chosen one), ``metric``,
    ``score`` (mean over windows, NaN when not backtested), ``windows``, ``candidates``
    (models backtested), ``reason`` (one sentence).
    ``scores``: the backtest scores plus the ensembles' rows.
    ``forecasts``: the backtest window forecasts plus the ensembles', for residual intervals.
    """

    table: pd.DataFrame
    scores: pd.DataFrame
    forecasts: pd.DataFrame
    horizon: int
    levels: tuple[int, ...]


def _tie(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Whether scores ``a`` and ``b`` are equal within the selection tolerance."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    result: np.ndarray = np.abs(x - y) <= REL_TOL * np.maximum(np.abs(x), np.abs(y)) + ABS_TOL
    return result


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def _rank(means: pd.DataFrame) -> pd.DataFrame:
    """Order candidates per series: the tie-aware winner first, then by score and simplicity."""
    if means.empty:
        return means.reset_index(drop=True)
    models = means["model"].to_numpy(dtype=object)
    distinct = pd.unique(models)
    keys = sorted({complexity_rank(m) for m in distinct})
    position = {key: i for i, key in enumerate(keys)}
    simplicity = np.asarray([position[complexity_rank(m)] for m in distinct], dtype=np.int64)
    cx = simplicity[pd.Index(distinct).get_indexer(models)] if len(models) else simplicity
    series, _ = pd.factorize(means[ID].to_numpy(dtype=object), sort=True)
    score = means["score"].to_numpy(dtype=float)
    best = pd.Series(score).groupby(series, sort=False).transform("min").to_numpy()
    tied = _tie(score, best)
    # Per series: the winner (tied with the best, then simplest), then the rest by score and
    # simplicity; every sort stable, as the frame-based ranking was.
    by_tie = np.lexsort((cx, ~tied, series))
    first = np.r_[True, series[by_tie][1:] != series[by_tie][:-1]]
    winners = by_tie[first]
    rest = np.ones(len(score), dtype=bool)
    rest[winners] = False
    others = np.flatnonzero(rest)
    others = others[np.lexsort((cx[others], score[others], series[others]))]
    combined = np.concatenate([winners, others])
    ranked = combined[np.argsort(series[combined], kind="stable")]
    return means.iloc[ranked].reset_index(drop=True)


def _ensembles(
    ranked: pd.DataFrame,
    backtest: BacktestResult,
    layout: Layout,
    metrics: Sequence[Metric],
    top_k: int,
    combination: str = "mean",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score the combination of each series' top-k candidates on the stored window forecasts
    (``layout``: the model history, for the MASE/RMSSE scale): ``(scores, forecasts)``.

    The window forecasts are read as blocks of ``horizon`` steps, the layout the backtest stores
    them in for regular history (what the prepare stage hands over). Forecasts not so laid out
    (a backtest over a series that repeats a timestamp) get no ensemble: the single models'
    ranking stands.
    """
    top = ranked.sort_values([ID, "score"], kind="stable").groupby(ID, sort=False).head(top_k)
    counts = top.groupby(ID)["model"].transform("size")
    top = top[counts >= 2]
    if top.empty:
        return pd.DataFrame(), pd.DataFrame()
    blocks = _window_blocks(backtest.forecasts, backtest.horizon)
    groups = _member_groups(blocks, top) if blocks is not None else None
    if blocks is None or groups is None:
        return pd.DataFrame(), pd.DataFrame()
    means = _member_means(backtest.forecasts, blocks, groups, combination)
    names = _ensemble_names(top, combination)
    ens = _ensemble_forecasts(backtest.forecasts, blocks, groups, means, names)
    scored = _ensemble_scores(ens, blocks, groups, means, layout, metrics, backtest.season_length)
    if scored is None:
        return pd.DataFrame(), pd.DataFrame()
    return scored, ens


@dataclass(frozen=True)
class _WindowBlocks:
    """The backtest's window forecasts as blocks of ``horizon`` rows, one per (series, model,
    window): the codes of each block and the columns the ensembles read, as arrays."""

    horizon: int
    series_ids: npt.NDArray[Any]
    model_names: npt.NDArray[Any]
    series: Ints  # per block
    model: Ints  # per block
    window: Ints  # per block
    ticks: Ints  # per row
    cutoff: Ints  # per row
    y: Floats  # per row

    def block(self, values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """A per-row column as ``(blocks, horizon)``."""
        return values.reshape(-1, self.horizon)


def _window_blocks(fc: pd.DataFrame, horizon: int) -> _WindowBlocks | None:
    """``fc`` read as blocks of ``horizon`` steps, or None when it is not so laid out (every
    block one series, model, window and cutoff, steps 1..horizon in time order, no missing)."""
    if horizon < 1 or len(fc) % horizon or fc.empty:
        return None
    series_codes, series_ids = factorize_runs(fc[ID].to_numpy(dtype=object), sort=True)
    model_codes, model_names = factorize_runs(fc["model"].to_numpy(dtype=object), sort=True)
    window = fc["window"].to_numpy()
    step = fc["step"].to_numpy()
    ticks = fc["ds"].to_numpy().view(np.int64)
    cutoff = fc["cutoff"].to_numpy().view(np.int64)
    y = fc["y"].to_numpy(dtype=float)

    def block(values: np.ndarray) -> np.ndarray:
        return values.reshape(-1, horizon)

    for values in (series_codes, model_codes, window, cutoff):
        if not bool(np.all(block(values) == block(values)[:, :1])):
            return None
    if not bool(np.all(block(step) == np.arange(1, horizon + 1))):
        return None
    if horizon > 1 and not bool(np.all(np.diff(block(ticks), axis=1) > 0)):
        return None
    if np.isnan(y).any() or (ticks == NAT).any() or (cutoff == NAT).any():
        return None
    return _WindowBlocks(
        horizon=horizon,
        series_ids=series_ids,
        model_names=model_names,
        series=block(series_codes)[:, 0],
        model=block(model_codes)[:, 0],
        window=block(window)[:, 0],
        ticks=ticks,
        cutoff=cutoff,
        y=y,
    )


@dataclass(frozen=True)
class _MemberGroups:
    """The member blocks of each ensemble, grouped by (series, window).

    ``member``: the members' block numbers, group after group, each group's blocks in the order
    they come (the order pandas would add them); ``firsts``/``sizes``: where each group starts
    and how many members it has; ``slot``: each member's place in its group; ``lead``: a block
    that stands for each group (its times, actuals and cutoff).
    """

    member: Ints
    firsts: Ints
    sizes: Ints
    slot: Ints
    lead: Ints


def _member_groups(blocks: _WindowBlocks, top: pd.DataFrame) -> _MemberGroups | None:
    """The blocks of each series' top models, per (series, window); None when the members of a
    group do not share their times, actuals and cutoff (then they cannot be averaged)."""
    wanted = pd.MultiIndex.from_arrays([top[ID].to_numpy(), top["model"].to_numpy()])
    have = pd.MultiIndex.from_arrays(
        [blocks.series_ids[blocks.series], blocks.model_names[blocks.model]]
    )
    member = np.flatnonzero(have.isin(wanted))
    n_windows = int(blocks.window.max()) + 1 if len(blocks.window) else 0
    group = blocks.series[member] * n_windows + blocks.window[member]
    order = np.argsort(group, kind="stable")
    member, group = member[order], group[order]
    firsts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.r_[firsts, len(group)])
    lead_of = np.repeat(member[firsts], sizes)
    for values in (blocks.ticks, blocks.y, blocks.cutoff):
        if not bool(np.all(blocks.block(values)[member] == blocks.block(values)[lead_of])):
            return None
    slot = np.arange(len(group)) - np.repeat(firsts, sizes)
    return _MemberGroups(member, firsts, sizes, slot, member[firsts])


def _member_means(
    fc: pd.DataFrame, blocks: _WindowBlocks, groups: _MemberGroups, combination: str = "mean"
) -> dict[str, Floats]:
    """Per value column (``yhat`` and the bounds), the members' combination (:func:`combine`)
    of each group's steps, ``(groups, horizon)``; the mean adds them in member order as
    pandas' mean does."""
    levels = [int(c.split("_")[-1]) for c in fc.columns if c.startswith("yhat_lo_")]
    n_groups, width = len(groups.firsts), int(groups.sizes.max())
    means: dict[str, Floats] = {}
    for column in ["yhat", *interval_columns(levels)]:
        stacked = np.full((width, n_groups, blocks.horizon), np.nan)
        stacked[groups.slot, np.repeat(np.arange(n_groups), groups.sizes)] = blocks.block(
            fc[column].to_numpy(dtype=float)
        )[groups.member]
        # An interval bound is combined only when every member has it; else it stays missing.
        means[column] = combine(stacked, combination, groups.sizes[:, None])
    return means


def _ensemble_forecasts(
    fc: pd.DataFrame,
    blocks: _WindowBlocks,
    groups: _MemberGroups,
    means: dict[str, Floats],
    names: pd.Series,
) -> pd.DataFrame:
    """The ensembles' window forecasts, with ``fc``'s columns: groups by series then window
    (the order :func:`_member_groups` makes them in), steps in time order."""
    horizon = blocks.horizon
    lead = groups.lead
    ens_ids = blocks.series_ids[blocks.series[lead]]
    frame: dict[str, Any] = {
        ID: np.repeat(ens_ids, horizon),
        "model": np.repeat(names.reindex(ens_ids).to_numpy(dtype=object), horizon),
        "window": np.repeat(blocks.window[lead], horizon),
        "cutoff": np.repeat(fc["cutoff"].to_numpy()[lead * horizon], horizon),
        "ds": blocks.block(fc["ds"].to_numpy())[lead].reshape(-1),
        "step": np.tile(np.arange(1, horizon + 1, dtype=np.int64), len(lead)),
        "y": blocks.block(blocks.y)[lead].reshape(-1),
        **{c: v.reshape(-1) for c, v in means.items()},
    }
    ens = pd.DataFrame(frame)
    return ens[[c for c in fc.columns if c in ens.columns]]


def _ensemble_scores(
    ens: pd.DataFrame,
    blocks: _WindowBlocks,
    groups: _MemberGroups,
    means: dict[str, Floats],
    layout: Layout,
    metrics: Sequence[Metric],
    season_length: int,
) -> pd.DataFrame | None:
    """The ensembles' score rows (``SCORE_COLUMNS`` and one column per metric), by cutoff then
    series as the backtest's scores come; None when a series has no history in ``layout``."""
    horizon, lead = blocks.horizon, groups.lead
    ens_ids = ens[ID].to_numpy()[::horizon]
    at = pd.Index(layout.ids).get_indexer(ens_ids)
    if (at < 0).any():
        return None
    cutoffs = ens["cutoff"].to_numpy()[::horizon]
    starts, lengths = layout.starts, layout.lengths
    counts = rows_up_to(layout.frame["ds"].to_numpy(), starts[at], lengths[at], cutoffs)

    def scale(powers: Sequence[int]) -> np.ndarray:
        y_hist = layout.frame["y"].to_numpy(dtype=float)
        values = series_scales(y_hist, starts, lengths, at, counts, season_length, powers)
        return np.asarray(values, dtype=float)

    levels = [int(c.split("_")[-1]) for c in means if c.startswith("yhat_lo_")]
    bounds = {lv: (means[f"yhat_lo_{lv}"], means[f"yhat_hi_{lv}"]) for lv in levels}
    y = blocks.block(blocks.y)[lead]
    values = block_scores(metrics, y, means["yhat"], bounds, scale)
    if values is None:
        return None
    scored = pd.DataFrame(
        {
            ID: ens_ids,
            "model": ens["model"].to_numpy()[::horizon],
            "window": blocks.window[lead],
            "cutoff": cutoffs,
            "status": "ok",
            "reason": "",
            **values,
        }
    )
    # Rows by cutoff, then series, as the backtest's scores (evaluate's order) come.
    scored = scored.iloc[np.lexsort((blocks.series[lead], blocks.block(blocks.cutoff)[lead, 0]))]
    columns = [*SCORE_COLUMNS, *(metric_name(m) for m in metrics)]
    return scored[columns].reset_index(drop=True)


def _ensemble_names(top: pd.DataFrame, combination: str = "mean") -> pd.Series:
    """The ensemble name of each series' members (``top``: its members, grouped by series)."""
    series, series_of = np.unique(top[ID].to_numpy(dtype=object), return_inverse=True)
    models = top["model"].to_numpy(dtype=object)
    # Members simplest first, as ensemble_name lists them: a rank per distinct model.
    distinct = sorted(set(models.tolist()), key=complexity_rank)
    rank = pd.Index(distinct).get_indexer(models)
    series_of = series_of.reshape(-1)
    order = np.lexsort((rank, series_of))
    place = np.arange(len(order)) - np.searchsorted(series_of[order], series_of[order])
    width = int(place.max()) + 1
    members = np.full((len(series), width), -1, dtype=np.int64)
    members[series_of[order], place] = rank[order]
    combos, combo_of = np.unique(members, axis=0, return_inverse=True)
    labels = [
        ensemble_name([distinct[k] for k in combo.tolist() if k >= 0], combination)
        for combo in combos
    ]
    return pd.Series(np.asarray(labels, dtype=object)[combo_of.reshape(-1)], index=series)


def select(
    backtest: BacktestResult,
    history: pd.DataFrame,
    *,
    metric: str = "mase",
    ensemble_top_k: int = 0,
    levels: Sequence[int] = (),
    combination: str = "mean",
    ensemble_on_tie: bool = ENSEMBLE_ON_TIE,
    pooled: bool = POOLED_ENSEMBLE,
    guard: tuple[str, float] | None = None,
    informed: Collection[str] = (),
    unseen: Mapping[str, str] | None = None,
    trusted: Sequence[str] = (),
) -> Selection:
    """Pick the model per series (see the module docstring for the rule).

    ``history`` is the partition's history (for the MASE/RMSSE scale of ensembles); ``levels``
    the configured interval levels (for the ensembles' coverage); ``combination`` how the top
    ``ensemble_top_k`` are combined; ``ensemble_on_tie`` whether a combination that ties with
    the best single model is chosen; ``pooled`` whether the partition's pooled scores can
    choose the combination for every series; ``guard`` the gate's naive benchmark and
    tolerance (its ``worse_than_naive`` rule): the pooled check never gives a series a
    combination that backtests worse than that, which the gate would count against the run;
    ``informed`` the candidates that were given the run's covariates (see the docstring);
    ``unseen`` the series whose horizon leaves the covariate range of their backtest windows,
    with why, which take the best-ranked of the ``trusted`` covariate models (the pipeline's
    ``[covariates] models``) that backtested no worse than ``guard``'s naive limit.
    """
    if metric not in _METRICS:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(_METRICS)}")
    if combination not in COMBINATIONS:
        raise ValueError(f"combination {combination!r} is not one of {', '.join(COMBINATIONS)}")
    label = _LABEL[metric]
    scores = backtest.scores
    series = backtest.series.set_index(ID)
    windows = series["windows"]

    ok = scores[scores["status"] == "ok"]
    means = ok.groupby([ID, "model"], sort=True).agg(score=(metric, "mean"), n_ok=(metric, "count"))
    means = means.reset_index()
    # Scored in every window of the series: a model that failed in any window is out.
    means = means[means[ID].map(windows).to_numpy() == means["n_ok"].to_numpy()]
    means = means[np.isfinite(means["score"].to_numpy(dtype=float))]
    ranked = _rank(means)

    metrics = [*_METRICS.values(), *(coverage(lv) for lv in levels)]
    ens_scores, ens_forecasts = pd.DataFrame(), pd.DataFrame()
    if ensemble_top_k >= 2 and not ranked.empty:
        # Canonical ids and times, as the backtest used, for the ensembles' in-sample scale.
        ens_scores, ens_forecasts = _ensembles(
            ranked, backtest, model_layout(history)[0], metrics, ensemble_top_k, combination
        )
    ens_mean = (
        ens_scores.groupby([ID, "model"])[metric].mean().reset_index()
        if not ens_scores.empty
        else pd.DataFrame(columns=[ID, "model", metric])
    ).set_index(ID)

    failures = _failure_notes(scores)
    # A strict caller (no combination on a tie) gets no pooled verdict either.
    trust = pooled and ensemble_on_tie
    slack = _Slack(frozenset(informed), frozenset(ranked["model"]))
    verdict = _pooled_verdict(ranked, ens_mean, metric, label, slack) if trust else ""
    champion = _pooled_champion(ranked, ens_mean, metric, label, slack) if trust else None
    pair, pair_scores, pair_forecasts = None, pd.DataFrame(), pd.DataFrame()
    if champion is not None and ensemble_top_k >= 2:
        pair, pair_scores, pair_forecasts = _champion_pair(
            champion, ranked, backtest, model_layout(history)[0], metrics, metric, label, slack
        )
    table = _table(
        series,
        ranked,
        ens_mean,
        label,
        metric,
        failures,
        ensemble_on_tie,
        verdict,
        guard,
        champion,
        _Unseen(dict(unseen or {}), tuple(trusted)),
        pair,
    )
    if pair is not None:
        # Series whose own top-k combination is the same pair have its rows already.
        taking = set(table.loc[table["model"] == pair.model, ID].tolist())
        taking -= set(ens_mean.index[ens_mean["model"] == pair.model].tolist())
        ens_scores = _stack(ens_scores, pair_scores[pair_scores[ID].isin(taking)])
        ens_forecasts = _stack(ens_forecasts, pair_forecasts[pair_forecasts[ID].isin(taking)])
    all_scores = _stack(scores, ens_scores)
    all_forecasts = _stack(backtest.forecasts, ens_forecasts)
    return Selection(
        table=table,
        scores=all_scores,
        forecasts=all_forecasts,
        horizon=backtest.horizon,
        levels=tuple(levels),
    )


@dataclass(frozen=True)
class _Slack:
    """How much worse, pooled, the combinations may score than a single model and still be
    trusted: ``POOLED_REL_TOL``, but only the tie tolerance against a model that was given
    the run's covariates when some candidate was not (see the module docstring)."""

    informed: frozenset[str]
    candidates: frozenset[str]

    def against(self, model: str) -> float:
        if model in self.informed and not self.candidates <= self.informed:
            return REL_TOL
        return POOLED_REL_TOL


def _pooled_verdict(
    ranked: pd.DataFrame, ens_mean: pd.DataFrame, metric: str, label: str, slack: _Slack
) -> str:
    """Why the partition trusts its combinations (a clause for the reasons), or "" when it
    does not: the series' combinations, pooled, score within ``slack`` of every single model
    scored on at least half of those series, each compared on the series it scored on."""
    if ens_mean.empty or ranked.empty:
        return ""
    ens = ens_mean[metric].astype(float)
    ens = ens[np.isfinite(ens.to_numpy())]
    if ens.empty:
        return ""
    singles = ranked[ranked[ID].isin(ens.index)]
    worst_margin, rival, rival_score, pooled_score = np.inf, "", np.nan, np.nan
    for model, rows in singles.groupby("model", sort=True):
        if 2 * len(rows) < len(ens):
            continue
        own = float(rows["score"].astype(float).mean())
        combined = float(ens.reindex(rows[ID]).mean())
        if combined > own * (1 + slack.against(str(model))) + ABS_TOL:
            return ""
        if own - combined < worst_margin:
            worst_margin, rival, rival_score, pooled_score = (
                own - combined,
                str(model),
                own,
                combined,
            )
    if not rival:
        return ""
    return (
        f"pooled over the partition's {len(ens)} series with a combination, the combinations "
        f"score {label} {_fmt(pooled_score)} against {_fmt(rival_score)} for the closest single "
        f"model {rival}; the partition takes the combination"
    )


@dataclass(frozen=True)
class _Champion:
    """The single model the partition's pooled scores choose for every series, and why."""

    model: str
    clause: str
    # Per series, the backtest score of a combination champion (None for a single model).
    scores: pd.Series | None = None


def _pooled_singles(ranked: pd.DataFrame) -> pd.Series:
    """Each single model's mean score over the series it scored on, for the models scored on
    at least half of the partition's series (the others are not judged on the partition)."""
    n_series = ranked[ID].nunique()
    pooled = ranked.groupby("model", sort=True).agg(score=("score", "mean"), n=("score", "size"))
    return pooled.loc[2 * pooled["n"] >= n_series, "score"].astype(float)


def _pooled_champion(
    ranked: pd.DataFrame, ens_mean: pd.DataFrame, metric: str, label: str, slack: _Slack
) -> _Champion | None:
    """The partition's best single model when it clearly beats the combinations: scored on
    at least half of the series, its pooled score the lowest of those, and better than the
    series' combinations pooled over the same series by more than ``slack``; None otherwise
    (the mirror of :func:`_pooled_verdict`)."""
    if ens_mean.empty or ranked.empty:
        return None
    ens = ens_mean[metric].astype(float)
    ens = ens[np.isfinite(ens.to_numpy())]
    n_series = ranked[ID].nunique()
    if ens.empty or 2 * len(ens) < n_series:
        return None
    pooled = _pooled_singles(ranked)
    if pooled.empty:
        return None
    model = str(pooled.idxmin())
    rows = ranked[(ranked["model"] == model) & ranked[ID].isin(ens.index)]
    if 2 * len(rows) < len(ens):
        return None
    own = float(rows["score"].astype(float).mean())
    combined = float(ens.reindex(rows[ID]).mean())
    tolerance = slack.against(model)
    if not combined > own * (1 + tolerance) + ABS_TOL:
        return None
    informed = (
        " (given the covariates, which some candidates were not)"
        if (tolerance < POOLED_REL_TOL)
        else ""
    )
    return _Champion(
        model,
        f"pooled over the partition's {len(rows)} series with a combination, {model}{informed} "
        f"scores {label} {_fmt(own)} against {_fmt(combined)} for the combinations, the best "
        f"single model by more than {tolerance:.0%}; the partition takes {model}",
    )


def _champion_pair(
    champion: _Champion,
    ranked: pd.DataFrame,
    backtest: BacktestResult,
    layout: Layout,
    metrics: Sequence[Metric],
    metric: str,
    label: str,
    slack: _Slack,
) -> tuple[_Champion | None, pd.DataFrame, pd.DataFrame]:
    """The mean of the champion and the partition's runner-up, when it beats the champion
    alone in every backtest window, pooled over the series: ``(pair, its scores, its window
    forecasts)``, or None and empty frames.

    Every window, not only on average: a partition's series share their conditions (one
    week's weather), so each window is one draw, and a pair that wins one window by a lot and
    loses the others is a bet on that draw."""
    none: tuple[_Champion | None, pd.DataFrame, pd.DataFrame] = (
        None,
        pd.DataFrame(),
        pd.DataFrame(),
    )
    n_series = ranked[ID].nunique()
    pooled = _pooled_singles(ranked).drop(index=champion.model, errors="ignore")
    if pooled.empty:
        return none
    runner = str(pooled.idxmin())
    # A model given the covariates is not averaged with one that was not (see _Slack).
    if slack.against(champion.model) != slack.against(runner):
        return none
    members = ranked[ranked["model"].isin([champion.model, runner])]
    scored, forecasts = _ensembles(members, backtest, layout, metrics, 2, "mean")
    if scored.empty:
        return none
    ok = backtest.scores[backtest.scores["status"] == "ok"]
    alone = ok[ok["model"] == champion.model].set_index([ID, "window"])[metric].rename("alone")
    pair = scored.set_index([ID, "window"])[metric].rename("pair")
    both = pd.concat([pair, alone], axis=1, join="inner").astype(float).dropna()
    if 2 * both.index.get_level_values(ID).nunique() < n_series:
        return none
    by_window = both.groupby(level="window").mean()
    if not bool((by_window["pair"] < by_window["alone"] - ABS_TOL).all()):
        return none
    together, own = float(both["pair"].mean()), float(both["alone"].mean())
    name = ensemble_name([champion.model, runner])
    clause = (
        f"{champion.clause}, paired with the runner-up {runner}: their mean scores {label} "
        f"{_fmt(together)} against {_fmt(own)} for {champion.model} alone, better in each of "
        f"the {len(by_window)} windows pooled over the partition"
    )
    per_series = scored.groupby(ID)[metric].mean().astype(float)
    return _Champion(name, clause, per_series), scored, forecasts


@dataclass(frozen=True)
class _Unseen:
    """Series whose forecast meets covariate values their backtest windows never had (``why``
    per series), and the covariate models they take then (best-ranked first)."""

    why: dict[str, str]
    trusted: tuple[str, ...]

    def choice(
        self, uid: Any, order: list[str], scores: list[float], limit: float
    ) -> tuple[_Champion | None, str]:
        """The covariate model series ``uid`` takes, or None with what its reason must still
        say ("" when it is not such a series)."""
        clause = self.why.get(str(uid))
        if clause is None:
            return None, ""
        for model, score in zip(order, scores, strict=True):
            if model not in self.trusted:
                continue
            if score > limit:
                return None, (
                    f"{clause}, but the covariate model {model} backtested {_fmt(score)}, worse "
                    f"than the gate's naive limit {_fmt(limit)}"
                )
            champion = _Champion(
                model,
                f"{clause}: the backtest did not judge the models in those conditions, so "
                f"the series takes {model}, the pipeline's covariate model",
            )
            return champion, ""
        return None, f"{clause}, but no covariate model scored in all its windows"


def _stack(base: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """``base`` with ``extra``'s rows appended (concat warns about empty frames)."""
    if extra.empty:
        return base
    if base.empty:
        return extra.reset_index(drop=True)
    return pd.concat([base, extra], ignore_index=True)


def _failure_notes(scores: pd.DataFrame) -> dict[Any, str]:
    """Per series with a failed or skipped model: ``"Model status (reason); ..."``, models in
    name order, each with the reason of its first such row (cut to 120 characters)."""
    bad = scores[scores["status"] != "ok"]
    if bad.empty:
        return {}
    first = bad.drop_duplicates([ID, "model"]).sort_values([ID, "model"], kind="stable")
    reasons = first["reason"].astype(str)
    reasons = reasons.where(reasons.str.len() <= 120, reasons.str.slice(0, 117) + "...")
    parts = (
        first["model"].astype(str) + " " + first["status"].astype(str) + " (" + reasons + ")"
    ).to_numpy(dtype=object)
    ids = first[ID].to_numpy(dtype=object)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return {
        uid: "; ".join(group)
        for uid, group in zip(ids[starts].tolist(), np.split(parts, starts[1:]), strict=True)
    }


def _candidates(n: int) -> str:
    return "the only candidate" if n == 1 else f"best of {n} candidates"


def _table(
    series: pd.DataFrame,
    ranked: pd.DataFrame,
    ens_mean: pd.DataFrame,
    label: str,
    metric: str,
    failures: dict[Any, str],
    ensemble_on_tie: bool = ENSEMBLE_ON_TIE,
    pooled_verdict: str = "",
    guard: tuple[str, float] | None = None,
    champion: _Champion | None = None,
    unseen: _Unseen | None = None,
    pair: _Champion | None = None,
) -> pd.DataFrame:
    """The selection table (see ``Selection.table``): one row per series of ``series``.

    ``pooled_verdict``: the partition trusts its combinations (see :func:`_pooled_verdict`),
    so every series with a scored combination takes it, except where it backtests worse than
    ``guard``'s naive benchmark by more than its tolerance. ``champion``: the partition trusts
    one single model (see :func:`_pooled_champion`), taken on the same terms; ``pair``: the
    champion's mean with the runner-up, taken before it on the same terms where it beat it in
    every window (see :func:`_champion_pair`). ``unseen``:
    series whose forecast leaves the covariate range of their windows take a covariate model,
    whatever the rest says.

    The ranking is cut into series and the ties and the ensembles are judged for all series at
    once; what is left per series is putting its sentence and its lists together.
    """
    uids = series.index
    n_windows = series["windows"].to_numpy().astype(int).tolist()
    tried = series["models"].tolist()
    notes = series["note"].tolist()
    models: list[str] = ranked["model"].tolist()
    scores: list[float] = ranked["score"].astype(float).tolist()
    spans, best_score, tied = _spans(uids, ranked)
    ens_name, ens_score = _ensemble_of(uids, ens_mean, metric)
    limits = _naive_limit(uids, ranked, guard)
    with np.errstate(invalid="ignore"):
        tie = _tie(ens_score, best_score)
        own = ((ens_score < best_score) & ~tie) | (tie & ensemble_on_tie)
        near = _on_pooled_terms(ens_score, best_score, limits)
        beats = own | (bool(pooled_verdict) & np.isfinite(ens_score) & near)
        takes = _takes_champion(uids, ranked, best_score, limits, champion)
    if champion is not None:
        # A series that chooses the champion on its own windows keeps its own reason.
        first = [models[a] if b > a else None for a, b in spans]
        takes &= ~(np.asarray([f == champion.model for f in first]) & ~beats)
    paired = _takes_champion(uids, ranked, best_score, limits, pair)
    rows = []
    for k, uid in enumerate(uids.tolist()):
        a, b = spans[k]
        forced, untaken = (
            unseen.choice(uid, models[a:b], scores[a:b], float(limits[k]))
            if unseen is not None and unseen.why
            else (None, "")
        )
        row = _choose(
            uid,
            models[a:b],
            scores[a:b],
            [m for m, t in zip(models[a + 1 : b], tied[a + 1 : b], strict=True) if t],
            ens_name[k],
            float(ens_score[k]),
            bool(beats[k]),
            n_windows[k],
            list(tried[k]),
            notes[k],
            label,
            metric,
            failures.get(uid, ""),
            "" if bool(own[k]) else pooled_verdict,
            forced or (pair if bool(paired[k]) else champion if bool(takes[k]) else None),
        )
        if untaken:
            row["reason"] = f"{row['reason']}; {untaken}"
        rows.append(row)
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def _takes_champion(
    uids: pd.Index,
    ranked: pd.DataFrame,
    best_score: Floats,
    limits: Floats,
    champion: _Champion | None,
) -> npt.NDArray[np.bool_]:
    """Per series, whether it takes the partition's ``champion``: scored on it, within
    ``POOLED_SERIES_TOL`` of its best single model and not worse than the gate's naive limit
    (``limits``, see :func:`_naive_limit`)."""
    if champion is None:
        return np.zeros(len(uids), dtype=bool)
    mine = (
        champion.scores
        if champion.scores is not None
        else ranked[ranked["model"] == champion.model].drop_duplicates(ID).set_index(ID)["score"]
    )
    score = mine.reindex(uids).to_numpy(dtype=float)
    taken: npt.NDArray[np.bool_] = np.isfinite(score) & _on_pooled_terms(score, best_score, limits)
    return taken


def _on_pooled_terms(score: Floats, best_score: Floats, limits: Floats) -> npt.NDArray[np.bool_]:
    """Per series, whether a choice the partition makes may be taken there: ``score`` within
    ``POOLED_SERIES_TOL`` of its best single model and not worse than the gate's naive limit
    (``limits``)."""
    with np.errstate(invalid="ignore"):
        near = score <= best_score * (1 + POOLED_SERIES_TOL) + ABS_TOL
        near &= ~(score > limits)
    return np.asarray(near, dtype=bool)


def _naive_limit(
    uids: pd.Index, ranked: pd.DataFrame, guard: tuple[str, float] | None
) -> npt.NDArray[np.float64]:
    """Per series, the score above which the gate counts a model as worse than its naive
    benchmark (NaN, no limit, where the benchmark was not scored)."""
    if guard is None:
        return np.full(len(uids), np.nan)
    baseline, tolerance = guard
    base = ranked[ranked["model"] == baseline].drop_duplicates(ID).set_index(ID)["score"]
    limit: npt.NDArray[np.float64] = base.reindex(uids).to_numpy(dtype=float) * (1.0 + tolerance)
    return limit


def _spans(
    uids: pd.Index, ranked: pd.DataFrame
) -> tuple[list[tuple[int, int]], np.ndarray, list[bool]]:
    """Where each series' models are in ``ranked`` (grouped by series, best first), each
    series' best score, and per ranked row whether it ties with its series' best."""
    spans: list[tuple[int, int]] = [(0, 0)] * len(uids)
    best_score = np.full(len(uids), np.nan)
    tied: list[bool] = []
    if len(ranked):
        at = uids.get_indexer(ranked[ID])
        starts = np.flatnonzero(np.r_[True, at[1:] != at[:-1]])
        stops = np.r_[starts[1:], len(at)]
        for k, a, b in zip(at[starts].tolist(), starts.tolist(), stops.tolist(), strict=True):
            spans[k] = (a, b)
        values = ranked["score"].to_numpy(dtype=float)
        best_score[at[starts]] = values[starts]
        tied = _tie(values, np.repeat(values[starts], stops - starts)).tolist()
    return spans, best_score, tied


def _ensemble_of(
    uids: pd.Index, ens_mean: pd.DataFrame, metric: str
) -> tuple[list[Any], np.ndarray]:
    """Each series' ensemble name (None without one) and its mean score (NaN without one)."""
    ens_name: list[Any] = [None] * len(uids)
    ens_score = np.full(len(uids), np.nan)
    if len(ens_mean):
        found = uids.get_indexer(ens_mean.index)
        mine = found >= 0
        names = ens_mean["model"].to_numpy(dtype=object)
        for k, name in zip(found[mine].tolist(), names[mine].tolist(), strict=True):
            ens_name[k] = name
        ens_score[found[mine]] = ens_mean[metric].to_numpy(dtype=float)[mine]
    return ens_name, ens_score


def _choose(
    uid: Any,
    order: list[str],
    scores: list[float],
    tied: list[str],
    ens_name: str | None,
    ens_score: float,
    ens_better: bool,
    n_windows: int,
    tried: list[str],
    note: str,
    label: str,
    metric: str,
    failures: str,
    pooled_verdict: str = "",
    champion: _Champion | None = None,
) -> dict[str, Any]:
    """The selection row of one series (see ``Selection.table``), from plain values: its
    ranking, the models tied with the best, its ensemble and whether that beats the best
    (on its own windows or, with ``pooled_verdict``, pooled over the partition); with
    ``champion``, the single model the partition chose for it."""
    row: dict[str, Any] = {ID: uid, "metric": metric, "windows": n_windows, "candidates": tried}
    plural = "window" if n_windows == 1 else "windows"
    if not order:
        return _unscored(row, tried, n_windows, note, failures)
    if champion is not None and champion.scores is not None:
        own = float(champion.scores[uid])
        return {
            **row,
            "model": champion.model,
            "source": "ensemble",
            "members": ensemble_members(champion.model),
            "fallbacks": order,
            "score": own,
            "reason": f"{champion.model}: {label} {_fmt(own)} over {n_windows} {plural}, "
            f"against {_fmt(float(scores[0]))} for its best single model {order[0]}; "
            f"{champion.clause}",
        }
    if champion is not None and champion.model in order:
        at = order.index(champion.model)
        own = float(scores[at])
        versus = (
            "its best single model"
            if at == 0
            else f"against {_fmt(float(scores[0]))} for its best single model {order[0]}"
        )
        return {
            **row,
            "model": champion.model,
            "source": "selected",
            "members": [champion.model],
            "fallbacks": [m for m in order if m != champion.model],
            "score": own,
            "reason": f"{champion.model}: {label} {_fmt(own)} over {n_windows} {plural}, "
            f"{versus}; {champion.clause}",
        }
    best, best_score = order[0], float(scores[0])
    reason = (
        f"{best}: {label} {_fmt(best_score)} over {n_windows} {plural}, {_candidates(len(order))}"
    )
    if tied:
        reason += f", tied with {', '.join(tied)} within {REL_TOL:.0%}; the simpler model wins"
    if ens_name is not None and np.isfinite(ens_score):
        if ens_better:
            if pooled_verdict:
                versus = (
                    f"against {_fmt(best_score)} for its best single model {best}; "
                    + pooled_verdict
                )
            elif bool(_tie(ens_score, best_score)):
                versus = (
                    f"tied within {REL_TOL:.0%} with the best single model {best} "
                    f"({_fmt(best_score)}); a combination wins ties"
                )
            else:
                versus = f"better than the best single model {best} ({_fmt(best_score)})"
            return {
                **row,
                "model": ens_name,
                "source": "ensemble",
                "members": ensemble_members(ens_name),
                "fallbacks": order,
                "score": ens_score,
                "reason": f"{ens_name}: {label} {_fmt(ens_score)} over {n_windows} {plural}, "
                + versus,
            }
        n_members = len(ensemble_members(ens_name))
        how = _COMBINATION_WORDS[ensemble_combination(ens_name)]
        reason += f"; the {how} of the top {n_members} scored {_fmt(ens_score)}"
    if failures:
        reason += f"; left out: {failures}"
    return {
        **row,
        "model": best,
        "source": "selected",
        "members": [best],
        "fallbacks": order[1:],
        "score": best_score,
        "reason": reason,
    }


def _unscored(
    row: dict[str, Any], tried: list[str], n_windows: int, note: str, failures: str
) -> dict[str, Any]:
    """The selection row of a series no candidate was scored on: the simplest routed model."""
    simplest = sorted(tried, key=complexity_rank) or ["Naive"]
    why = note if n_windows == 0 else f"no candidate scored in every window: {failures}"
    return {
        **row,
        "model": simplest[0],
        "source": "selected",
        "members": simplest[:1],
        "fallbacks": simplest[1:],
        "score": np.nan,
        "reason": f"{simplest[0]}: not chosen on scores ({why}); the simplest eligible model",
    }
