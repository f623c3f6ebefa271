"""Covariate-aware built-ins: models that take future-known inputs (``Capabilities.exogenous``).

``CovariateRegression`` is the GEFCom2012 organisers' "vanilla" benchmark (Hong, Pinson and
Fan 2014: load ~ trend + month + weekday x hour + T + T^2 + T^3 + T x month + T^2 x month +
T^3 x month + T x hour + T^2 x hour + T^3 x hour), generalised:

- calendar terms follow the frequency: weekday x hour-of-day below a day, weekday for daily
  series, month of year for any frequency up to monthly;
- each numeric covariate gets its cubic polynomial, and the polynomial times month (and times
  hour-of-day below a day); a 0/1 covariate (a holiday flag) enters linearly, with its products;
- below a day, each numeric covariate's mean over the last 24 hours enters the same way (the
  "recency effect" of Wang, Liu and Hong 2016: buildings keep yesterday's heat, so load follows
  the day's temperature as well as the hour's);
- each series is its own least-squares fit, computed for a chunk of series at once (batched
  normal equations, a small ridge so a calendar level missing from a short history costs
  nothing instead of failing).

Without covariates in the task it is the calendar regression alone.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from steadycast.errors import ConfigError, ModelError
from steadycast.models.base import Capabilities, ForecastTask
from steadycast.models.validation import expected_timestamps

__all__ = ["EXOGENOUS_MODELS", "CovariateRegression"]

Floats = npt.NDArray[np.float64]

# Floats of design matrix held at once: chunks of series are solved together up to this size.
_CHUNK_FLOATS = 8_000_000


class CovariateRegression:
    """Hong's multiple linear regression on calendar terms and covariate polynomials."""

    name: ClassVar[str] = "CovariateRegression"
    capabilities: ClassVar[Capabilities] = Capabilities(min_history=14, exogenous=True)

    def __init__(
        self, max_history: int = 0, ridge: float = 1e-4, degree: int = 3, recency_hours: int = 24
    ) -> None:
        if max_history < 0 or ridge < 0 or degree not in (1, 2, 3) or recency_hours < 0:
            raise ConfigError(
                f"model {self.name!r}: max_history must be >= 0 (0: all), ridge >= 0, degree "
                f"1, 2 or 3 and recency_hours >= 0 (0: none) (got {max_history}, {ridge}, "
                f"{degree}, {recency_hours})"
            )
        self.max_history = int(max_history)
        self.ridge = float(ridge)
        self.degree = int(degree)
        self.recency_hours = int(recency_hours)

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        """Fit each series on its rows with ``y`` and predict its rows without (or, without
        covariates, the ``horizon`` steps after its history)."""
        columns = list(task.covariates)
        missing = [c for c in columns if c not in history.columns]
        if missing:
            raise ModelError(self.name, f"the history has no covariate column {missing}")
        frame = history if columns else _with_future(history, task)
        step = (
            pd.Timedelta(pd.tseries.frequencies.to_offset(task.frequency).nanos, "ns")
            if _is_tick(task.frequency)
            else pd.Timedelta(days=30)
        )
        kind = (
            "subdaily"
            if step < pd.Timedelta(days=1)
            else "daily"
            if step < pd.Timedelta(days=7)
            else "long"
        )
        # The recency window in steps (below a day only): 24 hours of hourly data, 48 half-hours.
        window = (
            max(1, round(pd.Timedelta(hours=self.recency_hours) / step))
            if kind == "subdaily" and self.recency_hours
            else 0
        )
        out: list[pd.DataFrame] = []
        groups = _series_shapes(frame)
        for (n_fit, n_new), ids in groups.items():
            rows = frame[frame["unique_id"].isin(ids)]
            out.append(self._fit_group(rows, ids, n_fit, n_new, columns, kind, window))
        if not out:
            return pd.DataFrame({"unique_id": [], "ds": [], "yhat": []})
        return pd.concat(out, ignore_index=True)

    def _fit_group(
        self,
        rows: pd.DataFrame,
        ids: list[str],
        n_fit: int,
        n_new: int,
        columns: list[str],
        kind: str,
        window: int = 0,
    ) -> pd.DataFrame:
        """Fit series of one shape (``n_fit`` past and ``n_new`` future rows) together;
        ``window``: steps of the covariates' recent means (0: none)."""
        k = len(ids)
        rows = rows.sort_values(["unique_id", "ds"], kind="stable")
        total = n_fit + n_new
        ds = rows["ds"].to_numpy(dtype="datetime64[ns]").reshape(k, total)
        y = rows["y"].to_numpy(dtype=np.float64).reshape(k, total)[:, :n_fit]
        cov = (
            rows[columns].to_numpy(dtype=np.float64).reshape(k, total, len(columns))
            if columns
            else np.zeros((k, total, 0))
        )
        if window:
            cov = _with_recent_means(cov, n_fit, window)
        keep = min(n_fit, self.max_history) if self.max_history else n_fit
        start = n_fit - keep
        ds, y, cov = ds[:, start:], y[:, start:], cov[:, start:]
        # The design of a chunk of series at a time: (series, rows, terms) floats add up fast.
        most = 2 + 12 + 168 + cov.shape[2] * self.degree * (1 + 12 + 24)  # terms at most
        chunk = max(1, _CHUNK_FLOATS // max(1, (keep + n_new) * most))
        yhat = np.empty((k, n_new))
        for lo in range(0, k, chunk):
            part = slice(lo, lo + chunk)
            x = _design(ds[part], cov[part], keep, kind, self.degree)
            past, future, p = x[:, :keep], x[:, keep:], x.shape[2]
            target = y[lo : lo + chunk]
            centre = target.mean(axis=1, keepdims=True)
            gram = past.transpose(0, 2, 1) @ past
            rhs = (past.transpose(0, 2, 1) @ (target - centre)[..., None])[..., 0]
            scale = np.maximum(np.trace(gram, axis1=1, axis2=2) / p, 1e-12)
            gram += (self.ridge * scale)[:, None, None] * np.eye(p)
            beta = np.linalg.solve(gram, rhs[..., None])[..., 0]
            yhat[lo : lo + chunk] = (future @ beta[..., None])[..., 0] + centre
        return pd.DataFrame(
            {
                "unique_id": np.repeat(np.asarray(ids, dtype=object), n_new),
                "ds": ds[:, keep:].reshape(-1),
                "yhat": yhat.reshape(-1),
            }
        )


def _is_tick(frequency: str) -> bool:
    return isinstance(pd.tseries.frequencies.to_offset(frequency), pd.offsets.Tick)


def _with_future(history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
    """History plus the ``horizon`` future rows of each series (``y`` NaN)."""
    last = history.groupby("unique_id", sort=True)["ds"].max()
    future = expected_timestamps(last, task).drop(columns=["step"]).assign(y=np.nan)
    frame = pd.concat([history[["unique_id", "ds", "y"]], future], ignore_index=True)
    return frame.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)


def _series_shapes(frame: pd.DataFrame) -> dict[tuple[int, int], list[str]]:
    """Series grouped by (rows with ``y``, rows without): each group is solved as one batch."""
    known = frame["y"].notna()
    counts = pd.DataFrame(
        {
            "fit": known.groupby(frame["unique_id"]).sum(),
            "new": (~known).groupby(frame["unique_id"]).sum(),
        }
    )
    groups: dict[tuple[int, int], list[str]] = {}
    for uid, fit, new in zip(counts.index, counts["fit"], counts["new"], strict=True):
        if new and fit:
            groups.setdefault((int(fit), int(new)), []).append(str(uid))
    return groups


def _binary(fit: Floats) -> bool:
    """Whether a covariate takes at most two values on every series' fitting rows (a flag)."""
    return all(len(np.unique(row)) <= 2 for row in fit)


def _with_recent_means(cov: Floats, n_fit: int, window: int) -> Floats:
    """``cov`` with, after its columns, each numeric column's mean over its last ``window``
    rows (fewer at the start of the rows); flags get none."""
    numeric = [j for j in range(cov.shape[2]) if not _binary(cov[:, :n_fit, j])]
    if not numeric:
        return cov
    values = cov[:, :, numeric]
    total = np.cumsum(values, axis=1)
    lagged = np.zeros_like(total)
    lagged[:, window:] = total[:, :-window]
    count = np.minimum(np.arange(1, values.shape[1] + 1), window)[None, :, None]
    return np.concatenate([cov, (total - lagged) / count], axis=2)


def _one_hot(codes: npt.NDArray[np.int64], size: int) -> Floats:
    out = np.zeros((*codes.shape, size))
    np.put_along_axis(out, codes[..., None], 1.0, axis=-1)
    return out


def _design(ds: npt.NDArray[Any], cov: Floats, n_fit: int, kind: str, degree: int) -> Floats:
    """The regressors of every row, ``(series, rows, terms)``; covariates are standardised on
    each series' fitting rows so their powers stay well scaled."""
    k, n = ds.shape
    stamps = pd.DatetimeIndex(ds.reshape(-1))
    months = np.asarray(stamps.month - 1, dtype=np.int64).reshape(k, n)
    # A month the fitting rows never saw (the horizon runs into a new month) has no fitted
    # terms: it takes the newest month that was seen instead of dropping the weather effect.
    seen = _one_hot(months[:, :n_fit], 12).any(axis=1)
    unseen = ~np.take_along_axis(seen, months, axis=1)
    months = np.where(unseen, months[:, n_fit - 1 : n_fit], months)
    month = _one_hot(months, 12)
    trend = (np.arange(n, dtype=np.float64) / max(n_fit, 1))[None, :, None].repeat(k, axis=0)
    blocks: list[Floats] = [np.ones((k, n, 1)), trend, month]
    hour = None
    if kind == "subdaily":
        h = np.asarray(stamps.hour, dtype=np.int64).reshape(k, n)
        wd = np.asarray(stamps.dayofweek, dtype=np.int64).reshape(k, n)
        blocks.append(_one_hot(wd * 24 + h, 168))
        hour = _one_hot(h, 24)
    elif kind == "daily":
        blocks.append(_one_hot(np.asarray(stamps.dayofweek, dtype=np.int64).reshape(k, n), 7))
    for j in range(cov.shape[2]):
        c = cov[:, :, j]
        fit = c[:, :n_fit]
        mean = fit.mean(axis=1, keepdims=True)
        std = fit.std(axis=1, keepdims=True)
        z = (c - mean) / np.where(std > 0, std, 1.0)
        binary = _binary(fit)
        powers = np.stack([z**d for d in range(1, (1 if binary else degree) + 1)], axis=2)
        blocks.append(powers)
        blocks.append((powers[:, :, :, None] * month[:, :, None, :]).reshape(k, n, -1))
        if hour is not None:
            blocks.append((powers[:, :, :, None] * hour[:, :, None, :]).reshape(k, n, -1))
    return np.concatenate(blocks, axis=2)


EXOGENOUS_MODELS: tuple[type[CovariateRegression], ...] = (CovariateRegression,)
