"""Run-level checks over the run's figures: volume parity, feed-fault share, pass share."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from steadycast.quality.checks._frame import _Frame, _prepare
from steadycast.quality.checks.context import CheckContext, RunFigures
from steadycast.quality.checks.spec import CheckResult, CheckSpec, _result
from steadycast.quality.severity import Severity

__all__ = ["check_feed_fault_share", "check_pass_share", "check_volume_parity", "measure"]


def measure(
    frame: pd.DataFrame,
    series_results: Sequence[CheckResult],
    specs: Mapping[str, CheckSpec],
    ctx: CheckContext,
) -> RunFigures:
    """This run's figures (for the next run's volume parity and pass share)."""
    f = _prepare(frame, ctx)
    return _measure(f, series_results, specs)


def _measure(
    f: _Frame, series_results: Sequence[CheckResult], specs: Mapping[str, CheckSpec]
) -> RunFigures:
    if f.n_series == 0:
        return RunFigures()
    vp = specs.get("volume_parity")
    fr = specs.get("freshness")
    lag = int(
        (vp.params.get("lag_steps") if vp else None)
        or (fr.params.get("max_lag_steps") if fr else None)
        or 0
    )
    active = int((f.newest_idx - f.idx[f.ends - 1] <= lag).sum())
    # A feed fault has its own fleet-level limit (``check_feed_fault_share``): it does not
    # count against the pass share, so a few faulty series are excluded, not held.
    failing = {
        r.unique_id
        for r in series_results
        if not r.passed
        and r.unique_id is not None
        and r.check != "feed_fault"
        and (r.blocking or r.severity == Severity.ERROR)
    }
    faulty = {
        r.unique_id
        for r in series_results
        if not r.passed and r.unique_id is not None and r.check == "feed_fault"
    }
    ids = set(map(str, f.ids))
    return RunFigures(f.n_series, len(f.y), active, len(ids - failing), len(faulty))


def check_volume_parity(
    current: RunFigures, spec: CheckSpec, ctx: CheckContext
) -> list[CheckResult]:
    """Compare this run's volume with the previous run's: the share of reporting series that
    stopped reporting, the share of series that appeared, and the drop in rows per series."""
    prev = ctx.previous
    p = spec.params
    if prev is None or prev.series == 0:
        return [
            _result(
                spec,
                None,
                True,
                f"volume parity: {current.series:,} series and {current.rows:,} rows; no "
                "previous run to compare with",
                value=0.0,
                threshold=float(p["max_vanished_share"]),
            )
        ]
    base_active = prev.active_series or prev.series
    vanished_share = (
        max(0, base_active - current.active_series) / base_active if base_active else 0.0
    )
    problems = _volume_problems(current, prev, p)
    if problems:
        value, limit, _ = max(problems, key=lambda x: x[0] / x[1] if x[1] else math.inf)
        return [
            _result(
                spec,
                None,
                False,
                "volume parity: " + "; ".join(text for _, _, text in problems),
                value=value,
                threshold=limit,
            )
        ]
    return [
        _result(
            spec,
            None,
            True,
            f"volume parity: {current.series:,} series ({current.active_series:,} reporting) and "
            f"{current.rows:,} rows against {prev.series:,} series ({base_active:,} reporting) "
            f"and {prev.rows:,} rows at the previous run",
            value=vanished_share,
            threshold=float(p["max_vanished_share"]),
        )
    ]


def _volume_problems(
    current: RunFigures, prev: RunFigures, p: Mapping[str, Any]
) -> list[tuple[float, float, str]]:
    """Each volume limit this run breaks: (value, limit, sentence part)."""
    base_active = prev.active_series or prev.series
    vanished = max(0, base_active - current.active_series)
    vanished_share = vanished / base_active if base_active else 0.0
    appeared = max(0, current.series - prev.series)
    appeared_share = appeared / prev.series
    rps_prev = prev.rows / prev.series
    rps_now = current.rows / current.series if current.series else 0.0
    rows_drop = max(0.0, 1.0 - rps_now / rps_prev) if rps_prev else 0.0
    problems: list[tuple[float, float, str]] = []
    if vanished_share > p["max_vanished_share"]:
        problems.append(
            (
                vanished_share,
                float(p["max_vanished_share"]),
                f"{vanished:,} of {base_active:,} series reporting at the previous run "
                f"({vanished_share:.1%}) no longer report "
                f"(limit {p['max_vanished_share']:.1%})",
            )
        )
    if appeared_share > p["max_appeared_share"]:
        problems.append(
            (
                appeared_share,
                float(p["max_appeared_share"]),
                f"{appeared:,} series appeared on top of the previous run's {prev.series:,} "
                f"({appeared_share:.1%}, limit {p['max_appeared_share']:.1%})",
            )
        )
    if rows_drop > p["max_rows_drop_share"]:
        problems.append(
            (
                rows_drop,
                float(p["max_rows_drop_share"]),
                f"rows per series fell {rows_drop:.1%} from {rps_prev:,.1f} to {rps_now:,.1f} "
                f"(limit {p['max_rows_drop_share']:.1%})",
            )
        )
    return problems


def check_feed_fault_share(
    current: RunFigures,
    spec: CheckSpec,
    ctx: CheckContext,
    failed_results: Sequence[CheckResult] = (),
) -> list[CheckResult]:
    """Hold the run (policy ``stop``, whatever the series-level policy) when more than
    ``max_share`` of the series, and at least ``min_series``, have a feed fault: a fault across
    the fleet is a broken delivery, not a few broken meters. ``failed_results`` (the run's
    failed series-level results) let the sentence name the faults and the series."""
    limit, least = float(spec.params["max_share"]), int(spec.params["min_series"])
    faulty = current.feed_faults
    share = faulty / current.series if current.series else 0.0
    failed = share > limit and faulty >= least
    verb = "above" if failed else "within"
    mine = [r for r in failed_results if r.check == "feed_fault" and r.unique_id is not None]
    kinds: dict[str, list[str]] = {}
    for r in mine:
        kind = r.sentence.split("feed fault '", 1)[-1].split("'", 1)[0]
        kinds.setdefault(kind, []).append(str(r.unique_id))
    named = "; ".join(
        f"'{kind}' in {len(ids):,}: "
        + ", ".join(repr(i) for i in sorted(ids)[:5])
        + (f" and {len(ids) - 5:,} more" if len(ids) > 5 else "")
        for kind, ids in sorted(kinds.items(), key=lambda kv: -len(kv[1]))
    )
    return [
        CheckResult(
            check="feed_fault",
            passed=not failed,
            severity=Severity.ERROR if failed else spec.severity,
            blocking=True,
            policy="stop",
            unique_id=None,
            sentence=(
                f"feed faults: {faulty:,} of {current.series:,} series ({share:.1%}) have a "
                f"faulty newest delivery, {verb} the limit of {limit:.0%} of the fleet"
                + ("; the run is held" if failed else "")
                + (f" ({named})" if named else "")
            ),
            value=share,
            threshold=limit,
        )
    ]


def check_pass_share(current: RunFigures, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    """Fail when the share of series that pass every blocking or error check dropped by more
    than ``max_drop`` (in share points) since the previous run, or is below ``min_share``."""
    max_drop, min_share = float(spec.params["max_drop"]), float(spec.params["min_share"])
    share = current.pass_share
    prev = ctx.previous
    what = (
        f"pass share: {share:.1%} of series ({current.passing_series:,} of {current.series:,}) "
        "pass every blocking or error check"
    )
    if share < min_share:
        return [
            _result(
                spec,
                None,
                False,
                f"{what}, below the minimum of {min_share:.1%}",
                value=share,
                threshold=min_share,
            )
        ]
    if prev is None or prev.series == 0:
        return [
            _result(
                spec,
                None,
                True,
                f"{what}; no previous run to compare with",
                value=0.0,
                threshold=max_drop,
            )
        ]
    drop = prev.pass_share - share
    passed = drop <= max_drop + 1e-12
    trend = f"down {drop * 100:.1f} points" if drop > 0 else f"up {-drop * 100:.1f} points"
    return [
        _result(
            spec,
            None,
            passed,
            f"{what}, {trend} from {prev.pass_share:.1%} at the previous run "
            f"(limit a drop of {max_drop * 100:.1f} points)",
            value=max(0.0, drop),
            threshold=max_drop,
        )
    ]
