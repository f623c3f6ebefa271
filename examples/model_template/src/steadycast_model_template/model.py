"""SeasonalMedian: the median of the same phase over the last few seasons.

Why this model: it is a seasonal naive forecast that one outlier cannot move. On a meter whose
last Tuesday had a spike, SeasonalNaive repeats the spike; the median of the last five Tuesdays
does not. It is also a short, complete example of the contract:

- class attributes ``name`` and ``capabilities`` declare what the model is and can do;
- ``__init__(**params)`` takes the parameters a pipeline file gives it (``[models.params]``);
- ``forecast(history, task)`` receives ``unique_id, ds, y`` for a batch of series (sorted, regular,
  no gaps) and returns ``unique_id, ds, yhat`` with ``task.horizon`` rows per series, at the
  ``horizon`` steps after each series' last timestamp.

The platform validates the output, runs the model in an isolated worker, backtests it against
the built-ins and falls back when it fails. The model only computes.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from steadycast.models.base import Capabilities, ForecastTask


class SeasonalMedian:
    """Median of the same phase over the last ``seasons`` seasons (or of the last points)."""

    name: ClassVar[str] = "SeasonalMedian"
    capabilities: ClassVar[Capabilities] = Capabilities(
        intervals=False,  # the platform adds intervals from backtest errors
        min_history=1,  # with less than one season it uses the median of what there is
        handles_zeros=True,
        intermittent=False,
        global_model=False,
        cost="fast",
    )

    def __init__(self, seasons: int = 5) -> None:
        if not isinstance(seasons, int) or seasons < 1:
            raise ValueError(f"seasons must be a whole number >= 1, not {seasons!r}")
        self.seasons = seasons

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        frames = [
            self._one(str(uid), part, task)
            for uid, part in history.groupby("unique_id", sort=False)
        ]
        return pd.concat(frames, ignore_index=True)

    def _one(self, uid: str, part: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        y = part["y"].to_numpy(dtype=float)
        season = task.season_length if len(y) >= task.season_length else 1
        # Rows: recent seasons, oldest first; columns: phase within the season.
        cycles = min(self.seasons, len(y) // season)
        recent = y[len(y) - cycles * season :].reshape(cycles, season)
        profile = np.median(recent, axis=0)
        steps = np.arange(task.horizon) % season
        future = pd.date_range(part["ds"].iloc[-1], periods=task.horizon + 1, freq=task.frequency)
        return pd.DataFrame({"unique_id": uid, "ds": future[1:], "yhat": profile[steps]})
