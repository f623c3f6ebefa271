"""The planted pattern: a shape no built-in model captures, and that ChaosOracle knows exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd

_ORIGIN = pd.Timestamp("2020-01-01")


def planted_pattern(ds: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """A trend plus two cycles, one of 37.3 hours that matches no declared season.

    Build a series as ``level + scale * planted_pattern(ds)``; ChaosOracle recovers ``level``
    and ``scale`` by least squares and then forecasts it without error.
    """
    hours = (pd.DatetimeIndex(ds) - _ORIGIN) / pd.Timedelta(hours=1)
    t = np.asarray(hours, dtype=float)
    return 0.002 * t + np.sin(2 * np.pi * t / 24) + 0.8 * np.sin(2 * np.pi * t / 37.3)
