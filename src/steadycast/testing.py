"""The conformance kit: one set of contract checks for every model, built-in or plugged in.

``check_model(MyModel)`` is what a plugin author runs in their own tests and what steadycast runs
on every built-in. Each check forecasts a small synthetic batch in-process and judges the output
with the platform's own ``validate_forecast``, so passing here means the platform will accept
the model's output. A failure raises ``ModelContractError`` whose message names the check and,
where it applies, the series.

Checks, in order:

    declares             ``name`` (str), ``capabilities`` (Capabilities) and ``forecast``
    instantiates         ``model_cls(**params)`` works
    seasonal batch       three seasonal series of different levels
    constant series      a flat line (a stuck meter)
    all-zero series      only when ``capabilities.handles_zeros``
    short series         exactly ``capabilities.min_history`` points
    intermittent series  mostly zeros with a few positive values
    intervals            finite and ordered at every level, when ``capabilities.intervals``
                         (on the seasonal batch, which is long enough for any model)
    deterministic        the seasonal batch again gives the same forecast
    history untouched    the model does not modify the frame it was given
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from steadycast.errors import ModelOutputError
from steadycast.models.base import Capabilities, ForecastTask
from steadycast.models.registry import contract_problem
from steadycast.models.validation import validate_forecast

__all__ = ["DEFAULT_TASK", "ModelContractError", "check_model", "contract_batches"]

DEFAULT_TASK = ForecastTask(
    horizon=12, frequency="h", season_length=24, season_lengths=(24,), levels=(80, 95)
)


class ModelContractError(ModelOutputError):
    """A model broke the contract in one of ``check_model``'s checks."""

    def __init__(self, model: str, check: str, problem: str, series: str | None = None) -> None:
        super().__init__(model, f"check {check!r} failed: {problem}", series)
        self.check = check


def _frame(uid: str, y: np.ndarray, task: ForecastTask) -> pd.DataFrame:
    ds = pd.date_range("2024-01-01", periods=len(y), freq=task.frequency)
    return pd.DataFrame({"unique_id": uid, "ds": ds, "y": np.asarray(y, dtype=float)})


def contract_batches(caps: Capabilities, task: ForecastTask) -> dict[str, pd.DataFrame]:
    """The synthetic histories ``check_model`` forecasts, by check name (seeded, so stable)."""
    rng = np.random.default_rng(20240101)
    season = max(task.season_length, *task.season_lengths, 1)
    n = max(caps.min_history, 10 * season, 2 * task.horizon + 50)
    t = np.arange(n)
    seasonal = pd.concat(
        [
            _frame(
                f"seasonal_{k}",
                level + 0.3 * level * np.sin(2 * np.pi * t / season) + rng.normal(0, 1, n),
                task,
            )
            for k, level in enumerate((10.0, 100.0, 1000.0))
        ],
        ignore_index=True,
    )
    batches = {
        "seasonal batch": seasonal,
        "constant series": _frame("constant", np.full(n, 7.5), task),
    }
    if caps.handles_zeros:
        batches["all-zero series"] = _frame("zeros", np.zeros(n), task)
    short = rng.normal(20, 2, caps.min_history)
    batches["short series"] = _frame("short", short, task)
    intermittent = np.where(rng.random(n) < 0.1, rng.integers(1, 6, n), 0)
    intermittent[-season:][0] = 3  # at least one recent demand
    batches["intermittent series"] = _frame("intermittent", intermittent, task)
    return batches


def check_model(
    model_cls: type,
    params: Mapping[str, Any] | None = None,
    task: ForecastTask | None = None,
) -> None:
    """Run the contract checks on ``model_cls``; raise ``ModelContractError`` on the first failure."""
    problem = contract_problem(model_cls)
    label = str(getattr(model_cls, "name", getattr(model_cls, "__name__", model_cls)))
    if problem is not None:
        raise ModelContractError(label, "declares", f"{model_cls!r} {problem}")
    name: str = model_cls.name  # type: ignore[attr-defined]
    caps: Capabilities = model_cls.capabilities  # type: ignore[attr-defined]
    task = task or DEFAULT_TASK
    try:
        model = model_cls(**dict(params or {}))
    except Exception as exc:  # the boundary: any failure of model code is the model's
        raise ModelContractError(name, "instantiates", f"{type(exc).__name__}: {exc}") from exc

    def forecast(check: str, history: pd.DataFrame) -> pd.DataFrame:
        given = history.copy()
        try:
            out = model.forecast(given, task)
        except Exception as exc:  # the boundary: any failure of model code is the model's
            raise ModelContractError(
                name, check, f"forecast raised {type(exc).__name__}: {exc}"
            ) from exc
        if not given.equals(history):
            raise ModelContractError(name, "history untouched", "forecast modified its input")
        valid, failures = validate_forecast(out, history, task, name)
        if failures:
            series, reason = next(iter(failures.items()))
            raise ModelContractError(name, check, reason, series)
        return valid

    batches = contract_batches(caps, task)
    results = {check: forecast(check, history) for check, history in batches.items()}

    seasonal = results["seasonal batch"]
    if caps.intervals and task.levels:
        _check_intervals(name, seasonal, task)
    again = forecast("deterministic", batches["seasonal batch"])
    if not np.allclose(seasonal["yhat"], again["yhat"], rtol=1e-6):
        raise ModelContractError(name, "deterministic", "two forecasts of the same history differ")


def _check_intervals(name: str, out: pd.DataFrame, task: ForecastTask) -> None:
    for level in task.levels:
        lo, hi = out[f"yhat_lo_{level}"], out[f"yhat_hi_{level}"]
        missing = out.loc[lo.isna() | hi.isna(), "unique_id"]
        if len(missing):
            raise ModelContractError(
                name,
                "intervals",
                f"declares intervals but returned no {level}% interval "
                f"(columns yhat_lo_{level}, yhat_hi_{level})",
                str(missing.iloc[0]),
            )
    ordered = list(task.levels)
    for narrow, wide in zip(sorted(ordered), sorted(ordered)[1:], strict=False):
        inside = (out[f"yhat_lo_{wide}"] <= out[f"yhat_lo_{narrow}"] + 1e-9) & (
            out[f"yhat_hi_{narrow}"] <= out[f"yhat_hi_{wide}"] + 1e-9
        )
        if not inside.all():
            series = str(out.loc[~inside, "unique_id"].iloc[0])
            raise ModelContractError(
                name,
                "intervals",
                f"the {narrow}% interval is not inside the {wide}% interval",
                series,
            )
