"""The model contract: a small Protocol with frames in and frames out.

A model receives the history of a batch of series in long format (``unique_id, ds, y``, sorted by
id then time, no missing values, regular at the task's frequency) and returns one row per series
and step: ``unique_id, ds, yhat`` and, when it declares intervals, ``yhat_lo_L, yhat_hi_L`` for
each requested level L. The platform validates what comes back; the model only computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import pandas as pd


@dataclass(frozen=True)
class Capabilities:
    """What a model declares about itself, so the platform never probes with ``hasattr``."""

    intervals: bool = False
    min_history: int = 1  # points of history a series needs
    handles_zeros: bool = True  # all-zero or mostly-zero series
    intermittent: bool = False  # designed for intermittent demand
    global_model: bool = False  # learns across series (fit once per batch)
    cost: str = "fast"  # "fast" or "full": the tier it belongs to


@dataclass(frozen=True)
class ForecastTask:
    """What to forecast: the same for every series of a pipeline."""

    horizon: int
    frequency: str
    season_length: int = 1
    season_lengths: tuple[int, ...] = ()
    levels: tuple[int, ...] = field(default_factory=tuple)


@runtime_checkable
class ForecastModel(Protocol):
    """A forecasting model, built-in or plugged in through the ``steadycast.models`` entry points."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        """Fit on ``history`` and return ``task.horizon`` rows per series."""
        ...
