"""Profile each series and route it to the models that can sensibly forecast it.

Backtesting every candidate on every series wastes time on series where the answer is known
(a constant is forecast by its last value) and produces crashes on series a model cannot take
(too short for its minimum history, intermittent zeros for a model that divides by the level).
:func:`profile_series` measures, vectorised over a long frame, what routing needs;
:func:`route` turns that into a non-empty list of models per series and says why.

Nothing here raises for a degenerate series: an all-NaN, one-point, constant or all-zero series
gets a profile and a route like any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from steadycast.forecasting._segments import canonical_ids, comparable, sorted_runs
from steadycast.models.base import Capabilities

__all__ = [
    "ADI_CUTOFF",
    "CV2_CUTOFF",
    "SAFE_MODELS",
    "SHORT_SERIES",
    "profile_series",
    "route",
]

# Syntetos-Boylan (2005) cut-offs: average demand interval and squared coefficient of variation
# of the non-zero demand sizes. ADI >= 1.32 is "intermittent" (or "lumpy" when CV² >= 0.49).
ADI_CUTOFF = 1.32
CV2_CUTOFF = 0.49

# Series shorter than this many points (or two seasons) also get the simple models: a fitted
# model has too little data to beat them reliably, and a backtest has too few windows to tell.
SHORT_SERIES = 20

# The simple models every series can fall back on, simplest first. They need one point.
SAFE_MODELS: tuple[str, ...] = ("Naive", "HistoricAverage")


def profile_series(
    history: pd.DataFrame,
    season_length: int = 1,
    *,
    id_col: str = "unique_id",
    time_col: str = "ds",
    target_col: str = "y",
) -> pd.DataFrame:
    """One row per series describing what routing and a person need to know about it.

    Columns:
        ``length`` rows; ``usable_length`` rows from the first to the last observed value (what a
        model sees once interior gaps are filled); ``nan_share`` share of rows without a value;
        ``zero_share`` share of observed values equal to 0; ``constant`` every observed value is
        the same (a series with 0 or 1 observation counts as constant); ``all_zero``;
        ``negative`` any value below 0; ``adi`` average demand interval (observed points per
        non-zero point, inf without any); ``cv2`` squared coefficient of variation of the
        non-zero values; ``demand_class`` smooth / erratic / intermittent / lumpy (Syntetos-
        Boylan; "none" for series with negative values or no non-zero value);
        ``intermittent`` demand class intermittent or lumpy; ``seasonal_strength`` the
        autocorrelation at the season lag of the first differences, clipped to [0, 1]
        (differencing removes the trend that would otherwise inflate every lag; 0 when the
        series is shorter than about three seasons or ``season_length`` is 1);
        ``seasonal`` strength above the 90% white-noise bound 1.645/sqrt(n).
    """
    ids = canonical_ids(history[id_col])  # the canonical id type of the platform: str
    y = history[target_col].to_numpy(dtype=float)
    order, starts, length = sorted_runs(ids, comparable(history[time_col]))
    if order is not None:
        ids, y = ids[order], y[order]
    counts = _counts(y, starts, length)
    demand = _demand(counts)
    strength = _seasonal_strength(counts.codes, starts, length, y, season_length)
    with np.errstate(divide="ignore"):
        bound = 1.645 / np.sqrt(np.maximum(counts.n_obs, 1))
    seasonal = (strength > bound) & (season_length > 1)

    out = pd.DataFrame(
        {
            id_col: ids[starts],
            "length": length.astype(int),
            "usable_length": counts.usable.astype(int),
            "nan_share": 1.0 - counts.n_obs / length,
            "zero_share": demand.zero_share,
            "constant": demand.constant.astype(bool),
            "all_zero": demand.all_zero.astype(bool),
            "negative": counts.negative.astype(bool),
            "adi": demand.adi.astype(float),
            "cv2": demand.cv2.astype(float),
            "demand_class": demand.demand_class,
            "intermittent": demand.intermittent.astype(bool),
            "seasonal_strength": strength.astype(float),
            "seasonal": seasonal.astype(bool),
        }
    )
    return out


@dataclass(frozen=True)
class _Counts:
    """Per-series counts and extremes of a sorted history (``codes``: each row's series)."""

    codes: np.ndarray
    n_obs: np.ndarray
    n_zero: np.ndarray
    n_nonzero: np.ndarray
    negative: np.ndarray
    usable: np.ndarray
    ymin: np.ndarray
    ymax: np.ndarray
    nz_mean: np.ndarray
    nz_std: np.ndarray


def _counts(y: np.ndarray, starts: np.ndarray, length: np.ndarray) -> _Counts:
    """Observed, zero and non-zero points per series, its usable span and its extremes."""
    n_series = len(starts)
    # Series are numbered once; every per-series figure below is over those integer codes.
    codes = np.repeat(np.arange(n_series), length)
    position = np.arange(len(y)) - np.repeat(starts, length)
    observed = ~np.isnan(y)

    def per_series(values: np.ndarray, how: np.ufunc) -> np.ndarray:
        result: np.ndarray = how.reduceat(values, starts) if n_series else values[:0]
        return result

    n_obs = per_series(observed.astype(np.int64), np.add)
    first = per_series(np.where(observed, position, np.iinfo(np.int64).max), np.minimum)
    last = per_series(np.where(observed, position, -1), np.maximum)
    # Means and spreads as pandas computes them (compensated sums), grouped on the codes.
    grouped = pd.Series(np.where(observed & (y != 0), y, np.nan)).groupby(codes, sort=False)
    return _Counts(
        codes=codes,
        n_obs=n_obs,
        n_zero=per_series((observed & (y == 0)).astype(np.int64), np.add),
        n_nonzero=per_series((observed & (y != 0)).astype(np.int64), np.add),
        negative=per_series(observed & (y < 0), np.logical_or),
        usable=np.where(n_obs > 0, last - first + 1, 0),
        ymin=per_series(y, np.fmin),
        ymax=per_series(y, np.fmax),
        nz_mean=grouped.mean().to_numpy(),
        nz_std=grouped.std(ddof=0).to_numpy(),
    )


@dataclass(frozen=True)
class _Demand:
    """The demand shape of each series (see :func:`profile_series` for each column)."""

    zero_share: np.ndarray
    adi: np.ndarray
    cv2: np.ndarray
    constant: np.ndarray
    all_zero: np.ndarray
    demand_class: np.ndarray
    intermittent: np.ndarray


def _demand(c: _Counts) -> _Demand:
    """Zero share, ADI, CV², constancy and the Syntetos-Boylan class of each series."""
    with np.errstate(all="ignore"):
        zero_share = np.nan_to_num(c.n_zero / c.n_obs, nan=0.0, posinf=np.inf, neginf=-np.inf)
        adi = np.where(c.n_nonzero > 0, c.n_obs / c.n_nonzero, np.inf)
        cv2 = (c.nz_std / c.nz_mean) ** 2
    cv2 = np.where(np.isnan(cv2), 0.0, cv2)
    constant = (c.n_obs <= 1) | (c.ymin == c.ymax)
    all_zero = (c.n_obs > 0) & (c.ymin == 0) & (c.ymax == 0)
    demand_ok = ~c.negative & (c.n_nonzero > 0)
    demand_class = np.select(
        [
            ~demand_ok,
            (adi < ADI_CUTOFF) & (cv2 < CV2_CUTOFF),
            adi < ADI_CUTOFF,
            cv2 < CV2_CUTOFF,
        ],
        ["none", "smooth", "erratic", "intermittent"],
        default="lumpy",
    ).astype(object)
    intermittent = np.isin(demand_class, ["intermittent", "lumpy"]) & ~constant
    return _Demand(zero_share, adi, cv2, constant, all_zero, demand_class, intermittent)


def _seasonal_strength(
    codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray, y: np.ndarray, season_length: int
) -> np.ndarray:
    """Autocorrelation at lag m of the first differences, per series, NaN-aware, in [0, 1]."""
    if season_length <= 1:
        return np.zeros(len(starts))
    position = np.arange(len(y)) - np.repeat(starts, lengths)

    def shifted(values: np.ndarray, lag: int) -> np.ndarray:
        """``values`` moved ``lag`` rows later within each series (NaN where none)."""
        out = np.full(len(values), np.nan)
        if lag < len(values):
            out[lag:] = values[: len(values) - lag]
            out[position < lag] = np.nan
        return out

    # In place where it can be: these are history-sized arrays.
    with np.errstate(all="ignore"):  # as pandas' arithmetic: NaN and inf, silently
        centred = shifted(y, 1)
        np.subtract(y, centred, out=centred)  # the first differences
        mean = pd.Series(centred).groupby(codes, sort=False).transform("mean").to_numpy()
        np.subtract(centred, mean, out=centred)
        del mean
        pair = shifted(centred, season_length)
        np.multiply(centred, pair, out=pair)
        squares = centred**2
        del centred
    sums = (
        pd.DataFrame({"num": pair, "den": squares, "pairs": ~np.isnan(pair)}, copy=False)
        .groupby(codes, sort=False)
        .sum(min_count=1)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        acf = (sums["num"] / sums["den"]).to_numpy()
    # Fewer than two seasons of lagged pairs (about three seasons of data, the M4 rule): the
    # estimate is noise, call it "no seasonality".
    acf = np.where(sums["pairs"].to_numpy() >= 2 * season_length, acf, 0.0)
    acf = np.where(np.isfinite(acf), acf, 0.0)
    result: np.ndarray = np.clip(acf, 0.0, 1.0)
    return result


def _points(n: int) -> str:
    return "1 point" if n == 1 else f"{n} points"


def route(
    profile: pd.DataFrame,
    candidates: Sequence[str],
    capabilities: Mapping[str, Capabilities],
    *,
    season_length: int = 1,
    id_col: str = "unique_id",
) -> pd.DataFrame:
    """Eligible models per series: a frame ``unique_id, models (list[str]), note (str)``.

    Rules, in order (the note says which applied):

    1. A constant series (all zeros included) gets only the simplest safe model: its last
       value is the forecast, and a fitted model can only add noise or fail.
    2. A model must be known (in ``capabilities``) and need no more history than the series
       has (``min_history <= usable_length``).
    3. On intermittent series (Syntetos-Boylan), models that declare ``handles_zeros=False``
       are dropped and every available model declaring ``intermittent=True`` is offered, even
       if not a candidate. Intermittent-only models are offered to other series only when the
       configuration lists them as candidates.
    4. Short series (under ``SHORT_SERIES`` points or two seasons) also get the safe models.
    5. If nothing is left, the safe models that fit. The list is never empty: in the worst case
       (no observed value at all) it holds the first safe model and the note says why; the
       forecast stage then reports the series instead of forecasting it.
    """
    available = list(capabilities)
    safe = [m for m in SAFE_MODELS if m in capabilities] or list(SAFE_MODELS[:1])
    # A safe model missing from the registry is assumed to need one point (the default).
    pools = _Pools(
        capabilities=capabilities,
        safe=safe,
        need={m: capabilities.get(m, Capabilities()).min_history for m in [*available, *safe]},
        known=[c for c in dict.fromkeys(candidates) if c in capabilities],
        unknown=[c for c in dict.fromkeys(candidates) if c not in capabilities],
        specialists=[m for m in available if capabilities[m].intermittent],
        short_limit=max(SHORT_SERIES, 2 * season_length),
    )
    rows_models: list[list[str]] = []
    rows_notes: list[str] = []
    for n, is_constant, is_intermittent, adi, cv2, is_zero in zip(
        profile["usable_length"].to_numpy(),
        profile["constant"].to_numpy(),
        profile["intermittent"].to_numpy(),
        profile["adi"].to_numpy(),
        profile["cv2"].to_numpy(),
        profile["all_zero"].to_numpy(),
        strict=True,
    ):
        pool, note = pools.route(
            n, bool(is_constant), bool(is_zero), bool(is_intermittent), adi, cv2
        )
        rows_models.append(pool)
        rows_notes.append(note)
    return pd.DataFrame(
        {id_col: profile[id_col].to_numpy(), "models": rows_models, "note": rows_notes}
    )


@dataclass(frozen=True)
class _Pools:
    """What routing knows before it looks at a series: the models, what each needs, and the
    candidates that are known, unknown and the intermittent specialists."""

    capabilities: Mapping[str, Capabilities]
    safe: list[str]
    need: dict[str, int]
    known: list[str]
    unknown: list[str]
    specialists: list[str]
    short_limit: int

    def route(
        self,
        n: int,
        is_constant: bool,
        is_zero: bool,
        is_intermittent: bool,
        adi: float,
        cv2: float,
    ) -> tuple[list[str], str]:
        """The rules of :func:`route` for one series of ``n`` usable points: its models and
        the note saying why."""
        if n == 0:
            return self.safe[:1], "no observed values: nothing can forecast this series"
        if is_constant:
            what = "all zeros" if is_zero else "constant"
            return self.safe[:1], f"{what} ({_points(n)}): its last value is the forecast"
        notes: list[str] = []
        need = self.need
        pool = list(self.known)
        if is_intermittent:
            pool = [m for m in pool if self.capabilities[m].handles_zeros]
            pool += [m for m in self.specialists if m not in pool]
            notes.append(
                f"intermittent (ADI {adi:.2f}, CV² {cv2:.2f}): Croston-type models offered"
            )
        too_long = [m for m in pool if need[m] > n]
        pool = [m for m in pool if m not in too_long]
        if too_long:
            needs = ", ".join(f"{m} needs {need[m]}" for m in too_long)
            notes.append(f"{_points(n)}: {needs}")
        if n < self.short_limit:
            added = [m for m in self.safe if m not in pool and need[m] <= n]
            pool += added
            if added:
                notes.append(f"short ({_points(n)}): simple models added")
        if not pool:
            pool = [m for m in self.safe if need[m] <= n] or self.safe[:1]
            notes.append("no candidate fits: simple models only")
        if self.unknown:
            notes.append(f"unknown models skipped: {', '.join(self.unknown)}")
        return pool, "; ".join(notes)
