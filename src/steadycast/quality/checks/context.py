"""What the checks need besides the data, and the figures a run keeps for the next one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from steadycast.config import PipelineConfig

__all__ = ["CheckContext", "RunFigures"]


@dataclass(frozen=True)
class RunFigures:
    """The volume a run saw, stored with the run so the next run can compare against it.

    Additive over disjoint partitions of series (``a + b``), so a run that checks partition by
    partition can sum them. ``active_series``: series whose latest data is within the freshness
    lag of the pipeline's newest; ``passing_series``: series with no failed blocking or error
    check.
    """

    series: int = 0
    rows: int = 0
    active_series: int = 0
    passing_series: int = 0
    feed_faults: int = 0  # series with a failed feed_fault check

    def __add__(self, other: RunFigures) -> RunFigures:
        return RunFigures(
            self.series + other.series,
            self.rows + other.rows,
            self.active_series + other.active_series,
            self.passing_series + other.passing_series,
            self.feed_faults + other.feed_faults,
        )

    @property
    def pass_share(self) -> float:
        return self.passing_series / self.series if self.series else 1.0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunFigures:
        """Read figures stored by ``as_dict``; missing keys count as 0."""
        return cls(
            *(
                int(data.get(k) or 0)
                for k in ("series", "rows", "active_series", "passing_series", "feed_faults")
            )
        )


@dataclass(frozen=True)
class CheckContext:
    """What the checks need besides the data.

    ``now``: the clock for ``freshness.max_age`` (naive UTC; default: the wall clock).
    ``newest``: the pipeline's newest ``ds`` over all partitions (default: the frame's newest),
    so a partition-by-partition check measures lag against the whole fleet. ``previous``: the
    previous run's figures, or None on a first run (volume parity and pass share then pass).
    ``delivered_after``: the pipeline's newest ``ds`` at its last published run: data newer
    than that is the newest delivery the feed-fault check judges (None: the last
    ``checks.feed_fault.window_steps`` steps).
    """

    frequency: str
    season_length: int = 1
    now: pd.Timestamp | None = None
    newest: pd.Timestamp | None = None
    previous: RunFigures | None = None
    delivered_after: pd.Timestamp | None = None

    @classmethod
    def from_config(
        cls,
        cfg: PipelineConfig,
        *,
        now: pd.Timestamp | None = None,
        newest: pd.Timestamp | None = None,
        previous: RunFigures | None = None,
        delivered_after: pd.Timestamp | None = None,
    ) -> CheckContext:
        return cls(
            cfg.series.frequency, cfg.series.season_length, now, newest, previous, delivered_after
        )
