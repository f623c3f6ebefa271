"""Small synthetic histories shared by the model tests (seeded, so every run sees the same data)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from steadycast.models.base import ForecastTask

START = pd.Timestamp("2024-01-01")
HOURLY = ForecastTask(
    horizon=12, frequency="h", season_length=24, season_lengths=(24,), levels=(80, 95)
)


def series(uid: str, values: Sequence[float] | np.ndarray, freq: str = "h") -> pd.DataFrame:
    """One series in long format, starting at START."""
    y = np.asarray(values, dtype=float)
    ds = pd.date_range(START, periods=len(y), freq=freq)
    return pd.DataFrame({"unique_id": uid, "ds": ds, "y": y})


def seasonal(n: int, season: int = 24, level: float = 50.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return level + 0.3 * level * np.sin(2 * np.pi * t / season) + rng.normal(0, 1, n)


def intermittent(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.15, rng.integers(1, 5, n), 0).astype(float)
    y[-5] = 2.0  # at least one recent demand
    return y


def batch(*frames: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True)
