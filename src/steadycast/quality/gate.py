"""The gate: circuit breakers over a run as a whole, after forecast and before publish.

A run publishes only when every blocking rule passes; otherwise it is held: the current release
stays served, the run's forecasts are kept for inspection, and the run exits with code 3. Each
rule is a plain function ``rule(spec, inputs) -> GateResult`` with one shared signature,
composed from ``RULES``; each result carries a sentence that names the figure and the limit, so
whoever reads a held run knows what tripped and by how much.

    blocking_checks          a data-quality check with policy "stop" failed
    fallback_share           share of series on a fallback (or with no forecast) above a limit
    non_finite               a forecast or interval bound is NaN or infinite (after the
                             per-series remedy), or more than ``limit`` of the series needed it
    negative                 a negative forecast for a series never negative in its history
                             (after clipping), or more than ``limit`` of the series clipped
    level_vs_history         forecasts out of line with their own history (median ratio at the
                             same positions beyond ``max_ratio``), left or replaced per series;
                             held when more than ``limit`` of the series were
    total_jump               the forecast total moved against the current release beyond a limit
    worse_than_naive         share of series whose model backtests worse than seasonal naive
    series_without_forecast  share of series that got no forecast at all above a limit
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from steadycast.config import GateConfig
from steadycast.quality.checks import CheckResult, stop_results
from steadycast.quality.severity import Severity

__all__ = [
    "RULES",
    "GateDecision",
    "GateInputs",
    "GateResult",
    "GateSpec",
    "build_gate_specs",
    "evaluate_gate",
    "nonnegative_series",
]

ID = "unique_id"
_NAMED = 5  # series named in a sentence before "and N more"


@dataclass(frozen=True)
class GateSpec:
    """One configured rule: its name, whether it runs, whether it holds the run, its limit."""

    name: str
    enabled: bool = True
    blocking: bool = True
    limit: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GateResult:
    """What one rule found about the run. ``series``: the series that tripped it, if any."""

    check: str
    passed: bool
    detail: str
    blocking: bool = True
    severity: Severity = Severity.ERROR
    value: float | None = None
    limit: float | None = None
    series: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The run JSON's shape: ``{"check", "passed", "detail"}``."""
        return {"check": self.check, "passed": self.passed, "detail": self.detail}

    def record(self) -> dict[str, Any]:
        """Everything, for storing with the run."""
        return {
            "check": self.check,
            "passed": self.passed,
            "detail": self.detail,
            "blocking": self.blocking,
            "severity": str(self.severity),
            "value": self.value,
            "limit": self.limit,
            "series": list(self.series),
        }


@dataclass(frozen=True)
class GateDecision:
    """Publish (``passed``) or hold; ``results`` holds one result per enabled rule."""

    passed: bool
    results: list[GateResult]

    @property
    def failed(self) -> list[GateResult]:
        """Rules that failed (blocking or not)."""
        return [r for r in self.results if not r.passed]

    @property
    def holding(self) -> list[GateResult]:
        """Rules whose failure holds the run."""
        return [r for r in self.results if not r.passed and r.blocking]

    def as_json(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.results]

    def summary(self) -> str:
        """One line for logs, audit and the held run's error."""
        if self.passed:
            warned = [r.check for r in self.failed]
            extra = f" (not blocking: {', '.join(warned)})" if warned else ""
            return f"gate passed: {len(self.results)} rules{extra}"
        return "gate held the run: " + "; ".join(r.detail for r in self.holding)


@dataclass(frozen=True)
class GateInputs:
    """Everything the rules read.

    ``forecasts``: ``unique_id, ds, yhat, yhat_lo_L, yhat_hi_L, model``. ``provenance``: one row
    per series with ``unique_id, source`` ("selected", "ensemble", "fallback", "none") and
    ``model, backtest_score, metric, fallback_reason`` where known. ``current_release``: the
    forecasts of the release being served, or None. ``nonnegative``: series never negative in
    their history (see ``nonnegative_series``); None skips the rule. ``scores``: backtest
    scores, ``unique_id, model, window, status`` and a column per metric.
    """

    forecasts: pd.DataFrame
    provenance: pd.DataFrame
    check_results: Sequence[CheckResult] = ()
    current_release: pd.DataFrame | None = None
    nonnegative: Collection[str] | None = None
    scores: pd.DataFrame | None = None


Rule = Callable[[GateSpec, GateInputs], GateResult]


def nonnegative_series(history: pd.DataFrame) -> set[str]:
    """Series whose stored values were never below zero (``unique_id, y``). Over partitions,
    take the union of the partitions' sets (series are disjoint)."""
    if history.empty:
        return set()
    mins = history.groupby(ID, sort=False)["y"].min()
    return {str(uid) for uid in mins.index[mins.to_numpy() >= 0]}


def build_gate_specs(config: GateConfig) -> list[GateSpec]:
    """The configured rules, in ``RULES`` order."""
    return [
        GateSpec(
            "blocking_checks", config.blocking_checks.enabled, config.blocking_checks.blocking
        ),
        GateSpec(
            "fallback_share",
            config.fallback_share.enabled,
            config.fallback_share.blocking,
            config.fallback_share.limit,
            {"min_series": config.fallback_share.min_series},
        ),
        GateSpec(
            "non_finite",
            config.non_finite.enabled,
            config.non_finite.blocking,
            config.non_finite.limit,
            {"min_series": config.non_finite.min_series},
        ),
        GateSpec(
            "negative",
            config.negative.enabled,
            config.negative.blocking,
            config.negative.limit,
            {"min_series": config.negative.min_series},
        ),
        GateSpec(
            "level_vs_history",
            config.level_vs_history.enabled,
            config.level_vs_history.blocking,
            config.level_vs_history.limit,
            {
                "max_ratio": config.level_vs_history.max_ratio,
                "min_series": config.level_vs_history.min_series,
            },
        ),
        GateSpec(
            "total_jump",
            config.total_jump.enabled,
            config.total_jump.blocking,
            config.total_jump.limit,
        ),
        GateSpec(
            "worse_than_naive",
            config.worse_than_naive.enabled,
            config.worse_than_naive.blocking,
            config.worse_than_naive.limit,
            {
                "tolerance": config.worse_than_naive.tolerance,
                "baseline": config.worse_than_naive.baseline,
            },
        ),
        GateSpec(
            "series_without_forecast",
            config.series_without_forecast.enabled,
            config.series_without_forecast.blocking,
            config.series_without_forecast.limit,
        ),
    ]


def _names(series: Sequence[str]) -> str:
    shown = ", ".join(repr(s) for s in series[:_NAMED])
    more = len(series) - _NAMED
    return shown + (f" and {more} more" if more > 0 else "")


def _result(spec: GateSpec, passed: bool, detail: str, **kw: Any) -> GateResult:
    return GateResult(spec.name, passed, detail, blocking=spec.blocking, **kw)


def _within_fleet_limit(spec: GateSpec, affected: int, total: int) -> bool:
    """A share rule passes unless more than ``limit`` of the series, and at least
    ``min_series`` of them (or all of a smaller fleet), are affected: a few series of a larger
    fleet are a per-series matter, every series of a small one is not."""
    share = affected / total if total else 0.0
    return share <= spec.limit or affected < _least(spec, total)


def _least(spec: GateSpec, total: int) -> int:
    return min(int(spec.params.get("min_series", 1)), max(total, 1))


def _against_limit(spec: GateSpec, affected: int, total: int) -> str:
    """How a count stands against a share rule's limit, in words for the result's sentence."""
    share = affected / total if total else 0.0
    if share <= spec.limit:
        return f"within the limit of {spec.limit:.0%} of the fleet"
    least = _least(spec, total)
    if affected < least:
        return (
            f"above {spec.limit:.0%} of the fleet but fewer than {least} series, so a per-series "
            "matter"
        )
    return f"above the limit of {spec.limit:.0%} of the fleet"


def _series_ids(inputs: GateInputs) -> list[str]:
    ids = set(inputs.provenance[ID].astype(str)) if len(inputs.provenance) else set()
    if len(inputs.forecasts):
        ids |= set(inputs.forecasts[ID].astype(str))
    return sorted(ids)


# ----------------------------------------------------------------------------------------------
# The rules
# ----------------------------------------------------------------------------------------------


def rule_blocking_checks(spec: GateSpec, inputs: GateInputs) -> GateResult:
    """Hold the run when a data-quality check whose policy is "stop" failed."""
    stops = stop_results(inputs.check_results)
    excluded = {
        r.unique_id
        for r in inputs.check_results
        if not r.passed and r.policy == "exclude" and r.unique_id is not None
    }
    note = f" ({len(excluded):,} series excluded by policy 'exclude')" if excluded else ""
    if not stops:
        return _result(
            spec,
            True,
            f"no data-quality check with policy 'stop' failed{note}",
            value=0.0,
            limit=0.0,
        )
    shown = "; ".join(r.sentence for r in stops[:3])
    more = f"; and {len(stops) - 3} more" if len(stops) > 3 else ""
    series = tuple(sorted({r.unique_id for r in stops if r.unique_id is not None}))
    return _result(
        spec,
        False,
        f"{len(stops)} data-quality check{'s' if len(stops) > 1 else ''} with policy 'stop' "
        f"failed: {shown}{more}",
        value=float(len(stops)),
        limit=0.0,
        series=series,
    )


def rule_fallback_share(spec: GateSpec, inputs: GateInputs) -> GateResult:
    """Hold the run when too many series are on a fallback or have no forecast: one model
    failing a few series is normal, a fleet on fallbacks means something broke."""
    prov = inputs.provenance
    total = len(_series_ids(inputs))
    if total == 0:
        return _result(spec, True, "no series in this run", value=0.0, limit=spec.limit)
    on_fallback = prov[prov["source"].isin(["fallback", "none"])]
    ids = sorted(on_fallback[ID].astype(str).unique())
    share = len(ids) / total
    passed = _within_fleet_limit(spec, len(ids), total)
    reason = ""
    if ids and "fallback_reason" in prov.columns:
        reasons = on_fallback["fallback_reason"].fillna("").astype(str)
        reasons = reasons[reasons != ""]
        if len(reasons):
            top, count = reasons.value_counts().index[0], int(reasons.value_counts().iloc[0])
            reason = f"; most often because {top!r} ({count})"
    return _result(
        spec,
        passed,
        f"{len(ids):,} of {total:,} series ({share:.1%}) are on a fallback or have no forecast, "
        f"{_against_limit(spec, len(ids), total)}{reason}",
        value=share,
        limit=spec.limit,
        series=tuple(ids) if not passed else (),
    )


def _value_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c == "yhat" or c.startswith(("yhat_lo_", "yhat_hi_"))]


def _remedied(inputs: GateInputs, rule: str) -> list[str]:
    """Series whose forecast the run fixed for ``rule`` (provenance ``remedy``)."""
    prov = inputs.provenance
    if prov.empty or "remedy" not in prov.columns:
        return []
    acted = prov["remedy"].fillna("").astype(str).str.split(",")
    return sorted(prov.loc[acted.map(lambda r: rule in r), ID].astype(str).unique())


def _share_result(
    spec: GateSpec, inputs: GateInputs, fixed: list[str], what: str, fix: str
) -> GateResult:
    """Pass when the share of series fixed for this rule is within the limit; name them."""
    total = len(_series_ids(inputs))
    share = len(fixed) / total if total else 0.0
    passed = _within_fleet_limit(spec, len(fixed), total)
    if not fixed:
        return _result(spec, True, f"no {what}", value=0.0, limit=spec.limit)
    return _result(
        spec,
        passed,
        f"{len(fixed):,} of {total:,} series ({share:.1%}) had {what}, {fix} series by series; "
        f"{_against_limit(spec, len(fixed), total)}: {_names(fixed)}",
        value=share,
        limit=spec.limit,
        series=tuple(fixed),
        severity=Severity.ERROR if not passed else Severity.WARNING,
    )


def rule_non_finite(spec: GateSpec, inputs: GateInputs) -> GateResult:
    """Hold the run when any forecast or interval bound is still NaN or infinite, or when more
    than ``limit`` of the series needed a fallback for it (``quality.remedy``)."""
    fc = inputs.forecasts
    cols = _value_columns(fc)
    if fc.empty or not cols:
        return _result(spec, True, "no forecast values to check", value=0.0, limit=0.0)
    fixed = _remedied(inputs, "non_finite")
    values = fc[cols].to_numpy(dtype=np.float64, na_value=np.nan)
    bad_cells = ~np.isfinite(values)
    n_bad = int(bad_cells.sum())
    if n_bad == 0:
        if fixed:
            return _share_result(
                spec, inputs, fixed, "NaN or infinite forecasts", "replaced by a fallback"
            )
        return _result(
            spec,
            True,
            f"all {values.size:,} forecast values ({', '.join(cols)}) are finite",
            value=0.0,
            limit=0.0,
        )
    ids = sorted(fc.loc[bad_cells.any(axis=1), ID].astype(str).unique())
    return _result(
        spec,
        False,
        f"{n_bad:,} forecast values in {len(ids):,} series are NaN or infinite (limit 0): "
        f"{_names(ids)}",
        value=float(n_bad),
        limit=0.0,
        series=tuple(ids),
    )


def rule_negative(spec: GateSpec, inputs: GateInputs) -> GateResult:
    """Negative point forecasts for series never negative in their history: the run clips
    them per series (``quality.remedy``); hold when more than ``limit`` of the series needed
    it, or when any is left unclipped in more than ``limit`` of the series."""
    if inputs.nonnegative is None:
        return _result(spec, True, "no history statistics given; rule not evaluated")
    fc = inputs.forecasts
    if fc.empty:
        return _result(spec, True, "no forecast values to check", value=0.0, limit=0.0)
    fixed = _remedied(inputs, "negative")
    allowed = set(map(str, inputs.nonnegative))
    ids_col = fc[ID].astype(str)
    mask = ids_col.isin(allowed).to_numpy() & (fc["yhat"].to_numpy(dtype=np.float64) < 0)
    n_bad = int(mask.sum())
    if n_bad == 0:
        if fixed:
            return _share_result(
                spec,
                inputs,
                fixed,
                "negative forecasts although never negative in history",
                "clipped to 0",
            )
        return _result(
            spec,
            True,
            f"no negative forecast for the {len(allowed):,} series never negative in history",
            value=0.0,
            limit=0.0,
        )
    ids = sorted(ids_col[mask].unique())
    low = float(fc.loc[mask, "yhat"].min())
    total = len(_series_ids(inputs))
    affected = sorted(set(ids) | set(fixed))
    share = len(affected) / total if total else 0.0
    passed = _within_fleet_limit(spec, len(affected), total)
    return _result(
        spec,
        passed,
        f"{n_bad:,} negative forecasts (lowest {low:.4g}) in {len(ids):,} series that were never "
        f"negative in their history; {len(affected):,} of {total:,} series ({share:.1%}) "
        f"affected, {_against_limit(spec, len(affected), total)}: {_names(ids)}",
        value=share,
        limit=spec.limit,
        series=tuple(ids),
        severity=Severity.ERROR if not passed else Severity.WARNING,
    )


def rule_level_vs_history(spec: GateSpec, inputs: GateInputs) -> GateResult:
    """Judge each series' forecast level against its own history at the same positions (the
    provenance's ``level_ratio``, see ``quality.remedy.level_ratio``), whatever the forecast's
    overlap with the current release: a series still out of line, or more than ``limit`` of
    the fleet replaced for it, holds the run."""
    prov = inputs.provenance
    max_ratio = float(spec.params.get("max_ratio", 50.0))
    if prov.empty or "level_ratio" not in prov.columns:
        return _result(spec, True, "no history levels given; rule not evaluated", limit=spec.limit)
    ratio = prov["level_ratio"].to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.isfinite(ratio) & ((ratio > max_ratio) | (ratio < 1.0 / max_ratio))
    left = sorted(prov.loc[out, ID].astype(str).unique())
    fixed = _remedied(inputs, "level_vs_history")
    if left:
        worst = float(np.nanmax(np.abs(np.log(ratio[out]))))
        return _result(
            spec,
            False,
            f"{len(left):,} series have forecasts out of line with their own history (up to "
            f"{math.exp(worst):,.3g}x above or below it at the same positions, limit "
            f"{max_ratio:g}x) and no remedy: {_names(left)}",
            value=float(len(left)),
            limit=0.0,
            series=tuple(left),
        )
    if fixed:
        return _share_result(
            spec,
            inputs,
            fixed,
            f"forecasts more than {max_ratio:g}x above or below their own history",
            "replaced by their seasonal naive forecast",
        )
    judged = int(np.isfinite(ratio).sum())
    return _result(
        spec,
        True,
        f"every forecast of the {judged:,} series judged is within {max_ratio:g}x of its own "
        "history at the same positions",
        value=0.0,
        limit=spec.limit,
    )


def rule_total_jump(spec: GateSpec, inputs: GateInputs) -> GateResult:
    """Hold the run when the sum of forecasts over the horizon this run shares with the current
    release moved by more than ``limit`` (relative): a fleet does not double overnight, a unit
    or scaling error does."""
    old = inputs.current_release
    fc = inputs.forecasts
    if old is None or old.empty:
        return _result(spec, True, "no current release to compare with", limit=spec.limit)
    if fc.empty:
        return _result(spec, True, "no forecasts to compare", limit=spec.limit)
    left = fc[[ID, "ds", "yhat"]].assign(**{ID: fc[ID].astype(str)})
    right = old[[ID, "ds", "yhat"]].assign(**{ID: old[ID].astype(str)})
    both = left.merge(right, on=[ID, "ds"], suffixes=("_new", "_old"))
    if both.empty:
        return _result(
            spec,
            True,
            "no series and time in common with the current release; nothing to compare",
            limit=spec.limit,
        )
    new_total = float(both["yhat_new"].sum())
    old_total = float(both["yhat_old"].sum())
    span = (
        f"over {both[ID].nunique():,} series and {both['ds'].nunique():,} common steps "
        f"({both['ds'].min():%Y-%m-%d %H:%M} to {both['ds'].max():%Y-%m-%d %H:%M})"
    )
    if not math.isfinite(new_total):
        return _result(
            spec,
            False,
            f"the forecast total {span} is not finite",
            value=math.inf,
            limit=spec.limit,
        )
    if old_total == 0:
        return _result(
            spec,
            True,
            f"the current release totals 0 {span}; a relative jump is undefined",
            limit=spec.limit,
        )
    change = (new_total - old_total) / abs(old_total)
    passed = abs(change) <= spec.limit
    verb = "above" if not passed else "within"
    return _result(
        spec,
        passed,
        f"the forecast total {span} moved {change:+.1%} against the current release "
        f"({old_total:,.4g} -> {new_total:,.4g}), {verb} the limit of {spec.limit:.0%}",
        value=abs(change),
        limit=spec.limit,
    )


def rule_worse_than_naive(spec: GateSpec, inputs: GateInputs) -> GateResult:
    """Hold the run when too many series use a model that backtested worse than the seasonal
    naive baseline by more than ``tolerance``: selection should never do worse than the
    simplest honest forecast, and when it often does, something upstream is wrong."""
    baseline = str(spec.params.get("baseline", "SeasonalNaive"))
    tolerance = float(spec.params.get("tolerance", 0.1))
    prov, scores = inputs.provenance, inputs.scores
    if scores is None or scores.empty or prov.empty:
        return _result(spec, True, "no backtest scores; rule not evaluated", limit=spec.limit)
    metric = "mase"
    if "metric" in prov.columns and prov["metric"].notna().any():
        metric = str(prov["metric"].dropna().mode().iloc[0])
    if metric not in scores.columns:
        return _result(
            spec,
            True,
            f"backtest scores have no {metric!r} column; rule not evaluated",
            limit=spec.limit,
        )
    ok = scores[scores["status"] == "ok"] if "status" in scores.columns else scores
    means = ok.groupby([ok[ID].astype(str), "model"], observed=True)[metric].mean()
    naive = (
        means.xs(baseline, level="model") if baseline in means.index.get_level_values(1) else None
    )
    if naive is None or naive.empty:
        return _result(
            spec, True, f"no {baseline} backtest scores; rule not evaluated", limit=spec.limit
        )
    table = prov[[ID, "model"]].assign(**{ID: prov[ID].astype(str)})
    chosen = _chosen_scores(prov, table, means)
    base = table[ID].map(naive).to_numpy(dtype=np.float64, na_value=np.nan)
    usable = np.isfinite(chosen) & np.isfinite(base)
    n = int(usable.sum())
    if n == 0:
        return _result(
            spec,
            True,
            f"no series has both its model's and {baseline}'s {metric}; rule not evaluated",
            limit=spec.limit,
        )
    worse = usable & (chosen > base * (1.0 + tolerance)) & (table["model"] != baseline).to_numpy()
    ids = sorted(table.loc[worse, ID].unique())
    share = len(ids) / n
    passed = share <= spec.limit
    verb = "above" if not passed else "within"
    return _result(
        spec,
        passed,
        f"{len(ids):,} of {n:,} series ({share:.1%}) use a model that backtests worse than "
        f"{baseline} by more than {tolerance:.0%} ({metric}), {verb} the limit of "
        f"{spec.limit:.1%}" + (f": {_names(ids)}" if ids else ""),
        value=share,
        limit=spec.limit,
        series=tuple(ids) if not passed else (),
    )


def _chosen_scores(prov: pd.DataFrame, table: pd.DataFrame, means: pd.Series) -> np.ndarray:
    """Each series' backtest score of its chosen model: the provenance's, else the mean of
    its backtest windows."""
    if "backtest_score" in prov.columns:
        chosen = prov["backtest_score"].to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        chosen = np.full(len(prov), np.nan)
    lookup = np.array(
        [means.get((u, m), np.nan) for u, m in zip(table[ID], table["model"], strict=True)],
        dtype=np.float64,
    )
    return np.asarray(np.where(np.isfinite(chosen), chosen, lookup))


def rule_series_without_forecast(spec: GateSpec, inputs: GateInputs) -> GateResult:
    """Hold the run when series got no forecast at all (not even a fallback): every published
    series must have one."""
    all_ids = _series_ids(inputs)
    if not all_ids:
        return _result(spec, True, "no series in this run", value=0.0, limit=spec.limit)
    prov = inputs.provenance
    missing = set(prov.loc[prov["source"] == "none", ID].astype(str)) if len(prov) else set()
    with_rows = set(inputs.forecasts[ID].astype(str)) if len(inputs.forecasts) else set()
    missing |= set(all_ids) - with_rows
    ids = sorted(missing)
    share = len(ids) / len(all_ids)
    passed = share <= spec.limit
    if not ids:
        return _result(
            spec,
            True,
            f"all {len(all_ids):,} series have a forecast",
            value=0.0,
            limit=spec.limit,
        )
    verb = "above" if not passed else "within"
    return _result(
        spec,
        passed,
        f"{len(ids):,} of {len(all_ids):,} series ({share:.1%}) have no forecast, {verb} the "
        f"limit of {spec.limit:.1%}: {_names(ids)}",
        value=share,
        limit=spec.limit,
        series=tuple(ids),
    )


RULES: dict[str, Rule] = {
    "blocking_checks": rule_blocking_checks,
    "fallback_share": rule_fallback_share,
    "non_finite": rule_non_finite,
    "negative": rule_negative,
    "level_vs_history": rule_level_vs_history,
    "total_jump": rule_total_jump,
    "worse_than_naive": rule_worse_than_naive,
    "series_without_forecast": rule_series_without_forecast,
}


def evaluate_gate(
    config: GateConfig | Sequence[GateSpec],
    forecasts: pd.DataFrame,
    provenance: pd.DataFrame,
    check_results: Sequence[CheckResult] = (),
    current_release: pd.DataFrame | None = None,
    nonnegative: Collection[str] | None = None,
    scores: pd.DataFrame | None = None,
) -> GateDecision:
    """Run every enabled rule; the run may publish only when no blocking rule failed."""
    specs = build_gate_specs(config) if isinstance(config, GateConfig) else list(config)
    inputs = GateInputs(
        forecasts=forecasts,
        provenance=provenance,
        check_results=check_results,
        current_release=current_release,
        nonnegative=nonnegative,
        scores=scores,
    )
    results = [RULES[spec.name](spec, inputs) for spec in specs if spec.enabled]
    passed = all(r.passed or not r.blocking for r in results)
    return GateDecision(passed, results)
