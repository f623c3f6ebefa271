"""Running the checks over a frame and the run's figures, and reading their results."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from steadycast.quality.checks._frame import _prepare
from steadycast.quality.checks.context import CheckContext, RunFigures
from steadycast.quality.checks.feed_fault import _feed_fault
from steadycast.quality.checks.level_shift import _level_shift
from steadycast.quality.checks.parity import (
    _measure,
    check_feed_fault_share,
    check_pass_share,
    check_volume_parity,
)
from steadycast.quality.checks.series import _completeness, _flat_line, _freshness, _spikes
from steadycast.quality.checks.spec import RESULT_COLUMNS, SERIES_CHECKS, CheckResult, CheckSpec

__all__ = [
    "check_run",
    "check_series",
    "excluded_series",
    "level_shift_cuts",
    "results_frame",
    "run_checks",
    "stop_results",
]

_SERIES_FUNCS = {
    "freshness": lambda f, spec, ctx: _freshness(f, spec, ctx),
    "completeness": lambda f, spec, ctx: _completeness(f, spec, ctx),
    "flat_line": lambda f, spec, ctx: _flat_line(f, spec),
    "spikes": lambda f, spec, ctx: _spikes(f, spec, ctx),
    "level_shift": lambda f, spec, ctx: _level_shift(f, spec, ctx),
    "feed_fault": lambda f, spec, ctx: _feed_fault(f, spec, ctx),
}


def check_series(
    frame: pd.DataFrame, specs: Mapping[str, CheckSpec], ctx: CheckContext
) -> tuple[list[CheckResult], RunFigures]:
    """Run every enabled series-level check on ``frame`` (the whole fleet or one partition of
    series); returns the results and this frame's figures (sum them over partitions)."""
    f = _prepare(frame, ctx)
    results: list[CheckResult] = []
    for name in SERIES_CHECKS:
        spec = specs.get(name)
        if spec is not None and spec.enabled:
            results.extend(_SERIES_FUNCS[name](f, spec, ctx))
    return results, _measure(f, results, specs)


def check_run(
    current: RunFigures,
    specs: Mapping[str, CheckSpec],
    ctx: CheckContext,
    failed_results: Sequence[CheckResult] = (),
) -> list[CheckResult]:
    """Run the enabled run-level checks (feed-fault share, volume parity, pass share) on the
    run's figures; ``failed_results`` name the faults in the feed-fault share's sentence."""
    results: list[CheckResult] = []
    vp, ps = specs.get("volume_parity"), specs.get("pass_share")
    ff = specs.get("feed_fault")
    if ff is not None and ff.enabled:
        results.extend(check_feed_fault_share(current, ff, ctx, failed_results))
    if vp is not None and vp.enabled:
        results.extend(check_volume_parity(current, vp, ctx))
    if ps is not None and ps.enabled:
        results.extend(check_pass_share(current, ps, ctx))
    return results


def run_checks(
    frame: pd.DataFrame, specs: Mapping[str, CheckSpec], ctx: CheckContext
) -> tuple[list[CheckResult], RunFigures]:
    """Every enabled check over a whole frame: series-level results, then run-level ones."""
    results, figures = check_series(frame, specs, ctx)
    failed = [r for r in results if not r.passed]
    return results + check_run(figures, specs, ctx, failed), figures


def excluded_series(results: Iterable[CheckResult]) -> dict[str, list[str]]:
    """Series to leave out of this run (failed a check with policy ``exclude``), with the
    sentences that say why."""
    out: dict[str, list[str]] = {}
    for r in results:
        if not r.passed and r.policy == "exclude" and r.unique_id is not None:
            out.setdefault(r.unique_id, []).append(r.sentence)
    return out


def stop_results(results: Iterable[CheckResult]) -> list[CheckResult]:
    """Failed checks whose policy is ``stop``: each one holds the run."""
    return [r for r in results if not r.passed and r.policy == "stop"]


def level_shift_cuts(
    results: Iterable[CheckResult], specs: Mapping[str, CheckSpec] | None = None
) -> dict[str, pd.Timestamp]:
    """Where each shifted series' training window should start: the time of its latest
    detected level shift (results of the ``level_shift`` check that failed). With ``specs``,
    ``checks.level_shift.cut_training = false`` turns the cuts off (empty dict)."""
    spec = (specs or {}).get("level_shift")
    if spec is not None and not spec.params.get("cut_training", True):
        return {}
    return {
        r.unique_id: r.at
        for r in results
        if r.check == "level_shift"
        and not r.passed
        and r.unique_id is not None
        and r.at is not None
    }


def results_frame(results: Iterable[CheckResult], **constants: Any) -> pd.DataFrame:
    """Results as a frame with ``RESULT_COLUMNS`` (plus ``constants`` such as ``run_id``
    and ``pipeline`` as leading columns), ready to store. Severities are stored as their plain
    string values."""
    rows = [
        (
            r.check,
            r.passed,
            str(r.severity),
            r.blocking,
            r.policy,
            r.unique_id,
            r.sentence,
            r.value,
            r.threshold,
            r.at,
        )
        for r in results
    ]
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    frame["at"] = pd.to_datetime(frame["at"])
    frame["value"] = frame["value"].astype("float64")
    frame["threshold"] = frame["threshold"].astype("float64")
    for i, (name, value) in enumerate(constants.items()):
        frame.insert(i, name, value)
    return frame
