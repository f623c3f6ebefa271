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
4. With ``ensemble_top_k >= 2`` and at least two qualified candidates, the mean of the top k
   (in rank order) is scored on the stored window forecasts, with no refit. It is chosen only
   when it beats the best single model by more than the tie tolerance.
5. The rest of the ranking is the fallback chain for the forecast stage.

Series that could not be backtested (too short) or whose candidates all failed get the
simplest routed model, and the reason says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from steadycast.metrics import Metric, coverage, evaluate, metric_name
from steadycast.metrics import mase as mase_metric
from steadycast.metrics import rmsse as rmsse_metric
from steadycast.metrics import smape as smape_metric
from steadycast.stages.backtest import (
    ID,
    SCORE_COLUMNS,
    BacktestResult,
    interval_columns,
    model_history,
    wide_for_metrics,
)

__all__ = [
    "ABS_TOL",
    "COMPLEXITY",
    "ENSEMBLE_PREFIX",
    "REL_TOL",
    "TABLE_COLUMNS",
    "Selection",
    "complexity_rank",
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
    "AutoETS",
    "MSTL",
    "AutoARIMA",
    "LightGBM",
)

ENSEMBLE_PREFIX = "Ensemble("

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

_METRICS: dict[str, Metric] = {"mase": mase_metric, "smape": smape_metric, "rmsse": rmsse_metric}
_LABEL = {"mase": "MASE", "smape": "sMAPE", "rmsse": "RMSSE"}


def ensemble_name(members: Sequence[str]) -> str:
    """The model name an ensemble gets in scores, forecasts and provenance.

    Members are listed simplest first, so the same ensemble always has the same name.
    """
    return f"{ENSEMBLE_PREFIX}{'+'.join(sorted(members, key=complexity_rank))})"


def ensemble_members(name: str) -> list[str]:
    """The member models of an ensemble name, or ``[name]`` for a single model."""
    if name.startswith(ENSEMBLE_PREFIX) and name.endswith(")"):
        return name[len(ENSEMBLE_PREFIX) : -1].split("+")
    return [name]


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
    keys = sorted({complexity_rank(m) for m in means["model"]})
    position = {key: i for i, key in enumerate(keys)}
    means = means.assign(_cx=[position[complexity_rank(m)] for m in means["model"]])
    best = means.groupby(ID, sort=False)["score"].transform("min").to_numpy()
    means["_tied"] = _tie(means["score"].to_numpy(), best)
    winners = (
        means.sort_values([ID, "_tied", "_cx"], ascending=[True, False, True], kind="stable")
        .groupby(ID, sort=False)
        .head(1)
    )
    rest = means.drop(index=winners.index).sort_values([ID, "score", "_cx"], kind="stable")
    rest = rest.assign(_order=rest.groupby(ID, sort=False).cumcount() + 1)
    ranked = pd.concat([winners.assign(_order=0), rest])
    ranked = ranked.sort_values([ID, "_order"], kind="stable")
    return ranked.drop(columns=["_cx", "_tied", "_order"]).reset_index(drop=True)


def _ensembles(
    ranked: pd.DataFrame,
    backtest: BacktestResult,
    history: pd.DataFrame,
    metrics: Sequence[Metric],
    top_k: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score the mean of each series' top-k candidates on the stored window forecasts."""
    top = ranked.sort_values([ID, "score"], kind="stable").groupby(ID, sort=False).head(top_k)
    counts = top.groupby(ID)["model"].transform("size")
    top = top[counts >= 2]
    if top.empty:
        return pd.DataFrame(), pd.DataFrame()
    names = top.groupby(ID, sort=False)["model"].agg(lambda ms: ensemble_name(list(ms)))
    chosen = top[[ID, "model"]]
    fc = backtest.forecasts.merge(chosen, on=[ID, "model"], how="inner")
    levels = [int(c.split("_")[-1]) for c in fc.columns if c.startswith("yhat_lo_")]
    values = ["yhat", *interval_columns(levels)]
    keys = [ID, "window", "cutoff", "ds", "step", "y"]
    # An interval bound is averaged only when every member has it; else it stays missing.
    mean = fc.groupby(keys, sort=True)[values].mean()
    complete = fc.groupby(keys, sort=True)[values].count()
    n_members = fc.groupby(keys, sort=True)["model"].size()
    mean = mean.where(complete.eq(n_members, axis=0))
    ens = mean.reset_index()
    ens["model"] = ens[ID].map(names)
    wide, models = wide_for_metrics(ens, levels)
    scored = evaluate(wide, metrics, models, history, backtest.season_length)
    windows = ens[[ID, "model", "cutoff", "window"]].drop_duplicates()
    scored = scored.merge(windows, on=[ID, "model", "cutoff"], how="inner")
    scored["status"] = "ok"
    scored["reason"] = ""
    columns = [*SCORE_COLUMNS, *(metric_name(m) for m in metrics)]
    return scored[columns], ens[[c for c in backtest.forecasts.columns if c in ens.columns]]


def select(
    backtest: BacktestResult,
    history: pd.DataFrame,
    *,
    metric: str = "mase",
    ensemble_top_k: int = 0,
    levels: Sequence[int] = (),
) -> Selection:
    """Pick the model per series (see the module docstring for the rule).

    ``history`` is the partition's history (for the MASE/RMSSE scale of ensembles); ``levels``
    the configured interval levels (for the ensembles' coverage).
    """
    if metric not in _METRICS:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(_METRICS)}")
    label = _LABEL[metric]
    history = model_history(history)  # canonical ids and times, as the backtest used
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
        ens_scores, ens_forecasts = _ensembles(ranked, backtest, history, metrics, ensemble_top_k)
    ens_mean = (
        ens_scores.groupby([ID, "model"])[metric].mean().reset_index()
        if not ens_scores.empty
        else pd.DataFrame(columns=[ID, "model", metric])
    ).set_index(ID)

    by_series = {uid: group for uid, group in ranked.groupby(ID, sort=False)}
    failures = (
        scores[scores["status"] != "ok"]
        .groupby(ID)
        .apply(_failure_note, include_groups=False)
        .to_dict()
        if (scores["status"] != "ok").any()
        else {}
    )
    rows = [
        _choose(
            uid,
            by_series.get(uid),
            ens_mean.loc[uid] if uid in ens_mean.index else None,
            series.loc[uid],
            label,
            metric,
            failures.get(uid, ""),
        )
        for uid in series.index
    ]
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    all_scores = _stack(scores, ens_scores)
    all_forecasts = _stack(backtest.forecasts, ens_forecasts)
    return Selection(
        table=table,
        scores=all_scores,
        forecasts=all_forecasts,
        horizon=backtest.horizon,
        levels=tuple(levels),
    )


def _stack(base: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """``base`` with ``extra``'s rows appended (concat warns about empty frames)."""
    if extra.empty:
        return base
    if base.empty:
        return extra.reset_index(drop=True)
    return pd.concat([base, extra], ignore_index=True)


def _failure_note(group: pd.DataFrame) -> str:
    parts = []
    for model, rows in group.groupby("model", sort=True):
        reason = str(rows["reason"].iloc[0])
        reason = reason if len(reason) <= 120 else reason[:117] + "..."
        parts.append(f"{model} {rows['status'].iloc[0]} ({reason})")
    return "; ".join(parts)


def _candidates(n: int) -> str:
    return "the only candidate" if n == 1 else f"best of {n} candidates"


def _choose(
    uid: Any,
    ranked: pd.DataFrame | None,
    ensemble: pd.Series | None,
    info: pd.Series,
    label: str,
    metric: str,
    failures: str,
) -> dict[str, Any]:
    """The selection row of one series (see ``Selection.table``)."""
    n_windows = int(info["windows"])
    tried = list(info["models"])
    row: dict[str, Any] = {ID: uid, "metric": metric, "windows": n_windows, "candidates": tried}
    plural = "window" if n_windows == 1 else "windows"
    if ranked is None or ranked.empty:
        simplest = sorted(tried, key=complexity_rank) or ["Naive"]
        why = info["note"] if n_windows == 0 else f"no candidate scored in every window: {failures}"
        return {
            **row,
            "model": simplest[0],
            "source": "selected",
            "members": simplest[:1],
            "fallbacks": simplest[1:],
            "score": np.nan,
            "reason": f"{simplest[0]}: not chosen on scores ({why}); the simplest eligible model",
        }
    order = list(ranked["model"])
    scores = list(ranked["score"])
    best, best_score = order[0], float(scores[0])
    reason = (
        f"{best}: {label} {_fmt(best_score)} over {n_windows} {plural}, {_candidates(len(order))}"
    )
    tied = [m for m, s in zip(order[1:], scores[1:], strict=True) if _tie(s, best_score)]
    if tied:
        reason += f", tied with {', '.join(tied)} within {REL_TOL:.0%}; the simpler model wins"
    if ensemble is not None and np.isfinite(ensemble[metric]):
        ens_name, ens_score = str(ensemble["model"]), float(ensemble[metric])
        if ens_score < best_score and not _tie(ens_score, best_score):
            return {
                **row,
                "model": ens_name,
                "source": "ensemble",
                "members": ensemble_members(ens_name),
                "fallbacks": order,
                "score": ens_score,
                "reason": f"{ens_name}: {label} {_fmt(ens_score)} over {n_windows} {plural}, "
                f"better than the best single model {best} ({_fmt(best_score)})",
            }
        n_members = len(ensemble_members(ens_name))
        reason += f"; the mean of the top {n_members} scored {_fmt(ens_score)}"
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
