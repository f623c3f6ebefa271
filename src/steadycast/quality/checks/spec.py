"""What a check is and what it finds: ``CheckSpec`` -> ``CheckResult``, built from the config.

``build_specs`` resolves every "auto" (0) limit of the pipeline's ``[checks]`` tables into a
number derived from its horizon and season, so each result can quote the limit it was held to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import pandas as pd

from steadycast.config import PipelineConfig
from steadycast.quality.severity import Severity

__all__ = [
    "RESULT_COLUMNS",
    "SERIES_CHECKS",
    "CheckResult",
    "CheckSpec",
    "Policy",
    "build_specs",
    "reference_period",
]

Policy = Literal["warn", "exclude", "stop"]

SERIES_CHECKS = ("freshness", "completeness", "flat_line", "spikes", "level_shift", "feed_fault")
RESULT_COLUMNS = (
    "check",
    "passed",
    "severity",
    "blocking",
    "policy",
    "unique_id",
    "sentence",
    "value",
    "threshold",
    "at",
)


@dataclass(frozen=True)
class CheckSpec:
    """One configured check: its name, how bad a failure is, what it does, and its limits.

    ``params`` holds the resolved thresholds (an "auto" 0 in the config is already replaced by a
    number derived from the pipeline's horizon and season), so a result can quote its limit.
    """

    name: str
    severity: Severity = Severity.WARNING
    policy: Policy = "warn"
    enabled: bool = True
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def blocking(self) -> bool:
        """A failure changes what the run does (excludes the series or holds the run)."""
        return self.policy != "warn"


@dataclass(frozen=True)
class CheckResult:
    """What one check found about one series (``unique_id``) or the run (``unique_id=None``)."""

    check: str
    passed: bool
    severity: Severity
    blocking: bool
    policy: Policy
    unique_id: str | None
    sentence: str
    value: float | None = None
    threshold: float | None = None
    at: pd.Timestamp | None = None  # when: spike time, shift time, start of a flat run or gap

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = None if self.at is None else self.at.isoformat()
        return out


# Long but flat: one entry per check, each resolving its own "auto" limits in one place.
def build_specs(cfg: PipelineConfig) -> dict[str, CheckSpec]:
    """The pipeline's checks by name, with every "auto" (0) limit resolved to a number."""
    c = cfg.checks
    m = max(1, cfg.series.season_length)
    horizon_or_season = max(cfg.series.horizon, m)
    flat_steps = c.flat_line.max_steps or max(2 * m, 12)
    shift_window = c.level_shift.window_steps or _auto_shift_window(m)

    def spec(name: str, table: Any, **params: Any) -> CheckSpec:
        return CheckSpec(name, table.severity, table.policy, table.enabled, params)

    specs = [
        spec(
            "freshness",
            c.freshness,
            max_lag_steps=c.freshness.max_lag_steps or horizon_or_season,
            max_age=pd.Timedelta(c.freshness.max_age) if c.freshness.max_age else None,
        ),
        spec(
            "completeness",
            c.completeness,
            max_missing_share=c.completeness.max_missing_share,
            max_gap_steps=c.completeness.max_gap_steps or horizon_or_season,
            lookback_steps=c.completeness.lookback_steps or max(28 * m, 4 * cfg.series.horizon),
        ),
        spec(
            "flat_line",
            c.flat_line,
            max_steps=flat_steps,
            include_zero=c.flat_line.include_zero,
            allow_constant=c.flat_line.allow_constant,
            lookback_steps=c.flat_line.lookback_steps or 7 * flat_steps,
        ),
        spec(
            "spikes",
            c.spikes,
            max_z=c.spikes.max_z,
            lookback_steps=c.spikes.lookback_steps or max(7 * m, 28),
        ),
        spec(
            "level_shift",
            c.level_shift,
            min_z=c.level_shift.min_z,
            min_relative_change=c.level_shift.min_relative_change,
            window_steps=shift_window,
            cut_training=c.level_shift.cut_training,
        ),
        spec(
            "feed_fault",
            c.feed_fault,
            max_ratio=c.feed_fault.max_ratio,
            max_share=c.feed_fault.max_share,
            min_series=c.feed_fault.min_series,
            periods=c.feed_fault.periods,
            min_steps=c.feed_fault.min_steps or max(4, m // 4),
            window_steps=c.feed_fault.window_steps or horizon_or_season,
            max_window_steps=max(
                2 * reference_period(m), c.feed_fault.window_steps or horizon_or_season
            ),
            max_shift_hours=c.feed_fault.max_shift_hours,
            shift_gain=c.feed_fault.shift_gain,
        ),
        spec(
            "volume_parity",
            c.volume_parity,
            max_vanished_share=c.volume_parity.max_vanished_share,
            max_appeared_share=c.volume_parity.max_appeared_share,
            max_rows_drop_share=c.volume_parity.max_rows_drop_share,
            lag_steps=c.freshness.max_lag_steps or horizon_or_season,
        ),
        spec(
            "pass_share",
            c.pass_share,
            max_drop=c.pass_share.max_drop,
            min_share=c.pass_share.min_share,
        ),
    ]
    return {s.name: s for s in specs}


def _auto_shift_window(m: int) -> int:
    """A week of days for series with a daily season (m >= 24 steps), else four seasons.

    Each window must span whole seasons so the seasonal pattern cancels in its median, and
    for sub-daily data a whole week, so weekends do not look like a change of level.
    """
    if m >= 24:
        return 7 * m
    if m > 1:
        return 4 * m
    return 8


def reference_period(m: int) -> int:
    """The reference period: a week for sub-daily data with a daily season (same hour, same
    weekday), else the main season (same weekday of daily data, same month of monthly)."""
    return 7 * m if m >= 24 else max(1, m)


def _result(
    spec: CheckSpec, uid: str | None, passed: bool, sentence: str, **kw: Any
) -> CheckResult:
    return CheckResult(
        check=spec.name,
        passed=passed,
        severity=spec.severity,
        blocking=spec.blocking,
        policy=spec.policy,
        unique_id=uid,
        sentence=sentence,
        **kw,
    )
