"""The fast tier gives statsforecast's forecasts, for whole batches, on every kind of series.

Two oracles: statsforecast itself (same models, same parameters, on series long enough that no
short-series rule applies) and the statsforecast-backed built-ins of ``statistical.py`` (which
add the per-series rules for short series that the fast tier must reproduce).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steadycast.errors import ConfigError
from steadycast.models import fast
from steadycast.models import statistical as builtin
from steadycast.models.base import ForecastTask
from steadycast.models.fast import (
    FAST_MODELS,
    FastHistoricAverage,
    FastNaive,
    FastSeasonalNaive,
    FastSeasonalWindowAverage,
    FastSES,
    FastWindowAverage,
    segment_sums,
    split_series,
)
from steadycast.models.registry import builtin_models, create_model
from steadycast.models.validation import validate_forecast
from steadycast.testing import check_model

from .series import START, batch, series

TOLERANCE = {"rtol": 1e-12, "atol": 1e-12}  # the target is 1e-9; we hold 1000x tighter
HOURLY = ForecastTask(
    horizon=30, frequency="h", season_length=24, season_lengths=(24, 168), levels=(80, 95)
)
# Main season 168 first: series between 24 and 167 points fall back to the season of 24.
WEEKLY_FIRST = ForecastTask(
    horizon=10, frequency="h", season_length=168, season_lengths=(24, 168), levels=(90,)
)

PAIRS = [
    (FastNaive, builtin.Naive, {}),
    (FastSeasonalNaive, builtin.SeasonalNaive, {}),
    (FastHistoricAverage, builtin.HistoricAverage, {}),
    (FastWindowAverage, builtin.WindowAverage, {}),
    (FastWindowAverage, builtin.WindowAverage, {"window_size": 5}),
    (FastSeasonalWindowAverage, builtin.SeasonalWindowAverage, {}),
    (FastSeasonalWindowAverage, builtin.SeasonalWindowAverage, {"window_size": 3}),
    (FastSES, builtin.SES, {"alpha": 0.3}),
    (FastSES, builtin.SES, {}),
]
PAIR_IDS = [f"{f.name}{p or ''}" for f, _, p in PAIRS]


def fleet(seed: int = 7, count: int = 30) -> pd.DataFrame:
    """Random lengths (1 to 12 days, staggered starts) plus the edge cases of a real fleet."""
    rng = np.random.default_rng(seed)
    lengths = [*rng.integers(1, 24 * 12, count).tolist(), 1, 2, 23, 24, 25, 167, 168, 169]
    frames = []
    for i, n in enumerate(lengths):
        t = np.arange(n)
        y = (
            50
            + 10 * np.sin(2 * np.pi * t / 24)
            + rng.normal(0, 3, n)
            + rng.normal(0, 1, n).cumsum()
        )
        ds = pd.date_range(
            START + pd.Timedelta(hours=int(rng.integers(0, 500))), periods=n, freq="h"
        )
        frames.append(pd.DataFrame({"unique_id": f"s{i:02d}", "ds": ds, "y": y}))
    frames += [series("constant", np.full(60, 4.2)), series("zeros", np.zeros(60))]
    return batch(*frames)


def assert_same(ours: pd.DataFrame, reference: pd.DataFrame, columns: list[str]) -> None:
    merged = ours.merge(
        reference.assign(unique_id=reference["unique_id"].astype(str)),
        on=["unique_id", "ds"],
        how="outer",
        suffixes=("", "_ref"),
        indicator=True,
        validate="one_to_one",
    )
    assert (merged["_merge"] == "both").all(), "rows differ"
    for column in columns:
        np.testing.assert_allclose(merged[column], merged[f"{column}_ref"], **TOLERANCE)


def value_columns(model: type, task: ForecastTask) -> list[str]:
    levels = task.levels if model.capabilities.intervals else ()  # type: ignore[attr-defined]
    return ["yhat", *[f"yhat_{side}_{lv}" for lv in levels for side in ("lo", "hi")]]


# -- against statsforecast directly ------------------------------------------------------------


def _statsforecast(
    models: list[object], history: pd.DataFrame, h: int, level: list[int] | None
) -> pd.DataFrame:
    from statsforecast import StatsForecast

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = StatsForecast(models=models, freq="h", n_jobs=1).forecast(
            df=history, h=h, level=level
        )
    return out.rename(columns=lambda c: str(c).replace("-lo-", "_lo_").replace("-hi-", "_hi_"))


@pytest.mark.parametrize("equal_lengths", [True, False], ids=["equal", "unequal"])
def test_same_forecasts_and_intervals_as_statsforecast(equal_lengths: bool) -> None:
    from statsforecast.models import (
        HistoricAverage,
        Naive,
        SeasonalNaive,
        SeasonalWindowAverage,
        SimpleExponentialSmoothing,
        SimpleExponentialSmoothingOptimized,
        WindowAverage,
    )

    rng = np.random.default_rng(11)
    lengths = [200] * 25 if equal_lengths else rng.integers(48, 400, 25).tolist()
    history = batch(
        *[series(f"m{i}", rng.normal(100, 20, n).cumsum() / 10) for i, n in enumerate(lengths)]
    )
    task = ForecastTask(horizon=36, frequency="h", season_length=24, levels=(80, 95))
    with_levels = _statsforecast(
        [Naive(alias="n"), SeasonalNaive(24, alias="sn"), HistoricAverage(alias="ha")],
        history,
        36,
        [80, 95],
    )
    points = _statsforecast(
        [
            WindowAverage(24, alias="wa"),
            SeasonalWindowAverage(24, 2, alias="swa"),
            SimpleExponentialSmoothing(0.3, alias="ses"),
            SimpleExponentialSmoothingOptimized(alias="sesopt"),
        ],
        history,
        36,
        None,
    )
    cases = [
        (FastNaive(), with_levels, "n"),
        (FastSeasonalNaive(), with_levels, "sn"),
        (FastHistoricAverage(), with_levels, "ha"),
        (FastWindowAverage(window_size=24), points, "wa"),
        (FastSeasonalWindowAverage(window_size=2), points, "swa"),
        (FastSES(alpha=0.3), points, "ses"),
        (FastSES(), points, "sesopt"),
    ]
    for model, reference, alias in cases:
        columns = value_columns(type(model), task)
        renamed = reference.rename(columns={c.replace("yhat", alias): c for c in columns})
        assert_same(model.forecast(history, task), renamed[["unique_id", "ds", *columns]], columns)


# -- against the statsforecast-backed built-ins (short-series rules included) -------------------


@pytest.mark.parametrize(("fast_cls", "builtin_cls", "params"), PAIRS, ids=PAIR_IDS)
def test_same_as_the_builtin_on_a_mixed_fleet(
    fast_cls: type, builtin_cls: type, params: dict[str, object]
) -> None:
    history = fleet()
    for task in (HOURLY, WEEKLY_FIRST):
        ours = fast_cls(**params).forecast(history, task)
        assert_same(
            ours, builtin_cls(**params).forecast(history, task), value_columns(fast_cls, task)
        )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
    flat=st.booleans(),
)
def test_same_as_the_builtins_on_any_short_daily_batch(
    lengths: list[int], seed: int, flat: bool
) -> None:
    rng = np.random.default_rng(seed)
    task = ForecastTask(horizon=9, frequency="D", season_length=7, levels=(80,))
    history = batch(
        *[
            series(f"d{i}", np.full(n, 3.0) if flat else rng.gamma(2.0, 5.0, n), freq="D")
            for i, n in enumerate(lengths)
        ]
    )
    for fast_cls, builtin_cls in (
        (FastSeasonalNaive, builtin.SeasonalNaive),
        (FastSeasonalWindowAverage, builtin.SeasonalWindowAverage),
        (FastSES, builtin.SES),
    ):
        expected = builtin_cls().forecast(history, task)
        assert_same(fast_cls().forecast(history, task), expected, value_columns(fast_cls, task))


# -- the kinds of series a fleet has ---------------------------------------------------------


def test_short_series_fall_back_like_the_builtins() -> None:
    history = batch(series("short", [1.0, 2.0, 3.0, 4.0, 5.0]), series("day", np.arange(30.0)))
    out = FastSeasonalNaive().forecast(history, HOURLY).groupby("unique_id")["yhat"].apply(list)
    assert out["short"] == [5.0] * HOURLY.horizon  # Naive below one season
    assert out["day"] == [float(v) for v in [*range(6, 30), *range(6, 12)]]  # the last 24 hours
    windows = FastWindowAverage(window_size=10).forecast(history, HOURLY)
    assert windows.groupby("unique_id")["yhat"].first().to_dict() == {"short": 3.0, "day": 24.5}


def test_one_point_series_get_zero_width_intervals() -> None:
    history = series("one", [7.0])
    for model in (FastNaive(), FastSeasonalNaive(), FastHistoricAverage()):
        out = model.forecast(history, HOURLY)
        for column in ("yhat", "yhat_lo_95", "yhat_hi_95"):
            assert out[column].tolist() == [7.0] * HOURLY.horizon, model.name


@pytest.mark.parametrize("model_cls", FAST_MODELS, ids=lambda c: c.name)
def test_constant_and_zero_series_forecast_their_value_with_flat_intervals(
    model_cls: type,
) -> None:
    history = batch(series("flat", np.full(100, 4.2)), series("zeros", np.zeros(100)))
    out = model_cls().forecast(history, HOURLY).set_index("unique_id")
    np.testing.assert_allclose(out.loc["flat", "yhat"], 4.2, rtol=1e-14)
    assert (out.loc["zeros", "yhat"] == 0.0).all()
    for column in out.columns.drop("ds"):
        np.testing.assert_allclose(out[column], out["yhat"], atol=1e-12)


def test_equal_and_unequal_layouts_and_parts_give_the_same_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    history = fleet(seed=3, count=4)
    whole = {cls.name: cls().forecast(history, HOURLY) for cls in FAST_MODELS}
    monkeypatch.setattr(fast, "ROWS_PER_PART", 300)  # many parts, some of one long series
    for cls in FAST_MODELS:
        parted = cls().forecast(history, HOURLY)
        pd.testing.assert_frame_equal(parted, whole[cls.name], check_exact=False, rtol=1e-12)


def test_segment_sums_handle_empty_regular_and_final_runs() -> None:
    values = np.arange(10.0)
    starts = np.array([0, 3, 3, 7])
    stops = np.array([3, 3, 7, 10])
    assert segment_sums(values, starts, stops).tolist() == [3.0, 0.0, 18.0, 24.0]
    regular = segment_sums(values, np.array([1, 4, 7]), np.array([3, 6, 9]))
    assert regular.tolist() == [3.0, 9.0, 15.0]
    assert segment_sums(values, np.array([4]), np.array([4])).tolist() == [0.0]


# -- what the platform may hand over -------------------------------------------------------------


def test_interleaved_rows_and_categorical_ids_are_handled() -> None:
    history = fleet(seed=5, count=6)
    expected = FastNaive().forecast(history, HOURLY).sort_values(["unique_id", "ds"])
    shuffled = history.sample(frac=1.0, random_state=1)
    got = FastNaive().forecast(shuffled, HOURLY).sort_values(["unique_id", "ds"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
    categorical = history.assign(unique_id=history["unique_id"].astype("category"))
    got = FastNaive().forecast(categorical, HOURLY)
    assert list(got["unique_id"].unique()) == list(history["unique_id"].unique())


def test_repeated_timestamp_is_refused_with_the_series_named() -> None:
    history = batch(series("a", [1.0, 2.0]), series("b", [1.0, 2.0]).iloc[[0, 0]])
    with pytest.raises(ValueError, match=r"series 'b' has a repeated timestamp"):
        split_series(history)


def test_timestamps_follow_the_frequency_and_the_zone() -> None:
    monthly = ForecastTask(horizon=3, frequency="MS")
    history = series("m", [1.0, 2.0, 3.0], freq="MS")
    out = FastNaive().forecast(history, monthly)
    assert out["ds"].tolist() == list(pd.date_range("2024-04-01", periods=3, freq="MS"))
    aware = series("z", [1.0, 2.0]).assign(ds=lambda f: f["ds"].dt.tz_localize("Europe/Paris"))
    out = FastSES(alpha=0.5).forecast(aware, ForecastTask(horizon=2, frequency="h"))
    assert out["ds"].tolist() == list(
        pd.date_range("2024-01-01 02:00", periods=2, freq="h", tz="Europe/Paris")
    )


def test_empty_history_gives_an_empty_frame_with_the_columns() -> None:
    empty = series("x", []).iloc[0:0]
    out = FastNaive().forecast(empty, HOURLY)
    assert out.empty and list(out.columns) == [
        "unique_id",
        "ds",
        "yhat",
        "yhat_lo_80",
        "yhat_hi_80",
        "yhat_lo_95",
        "yhat_hi_95",
    ]
    assert list(FastSES().forecast(empty, HOURLY).columns) == ["unique_id", "ds", "yhat"]


# -- the contract ------------------------------------------------------------------------------


@pytest.mark.parametrize("model_cls", FAST_MODELS, ids=lambda c: c.name)
def test_passes_the_conformance_kit_and_is_registered(model_cls: type) -> None:
    check_model(model_cls)
    assert builtin_models()[model_cls.name] is model_cls
    assert model_cls.capabilities.cost == "fast"
    assert model_cls.capabilities.min_history == 1


def test_intervals_are_declared_only_where_statsforecast_gives_them() -> None:
    with_intervals = {cls.name for cls in FAST_MODELS if cls.capabilities.intervals}
    assert with_intervals == {"FastNaive", "FastSeasonalNaive", "FastHistoricAverage"}
    history = series("s", np.arange(50.0))
    out = FastWindowAverage().forecast(history, HOURLY)  # levels asked, none declared
    assert list(out.columns) == ["unique_id", "ds", "yhat"]
    valid, failures = validate_forecast(out, history, HOURLY, "FastWindowAverage")
    assert failures == {} and valid["yhat_lo_80"].isna().all()


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        (
            "FastWindowAverage",
            {"size": 3},
            r"model 'FastWindowAverage' has no parameter 'size'; it accepts: window_size",
        ),
        ("FastNaive", {"window_size": 3}, r"has no parameter 'window_size'; it accepts: none"),
        (
            "FastWindowAverage",
            {"window_size": 0},
            r"window_size must be a whole number of at least",
        ),
        ("FastSeasonalWindowAverage", {"window_size": 1.5}, r"window_size must be a whole number"),
        ("FastSES", {"alpha": 1.5}, r"model 'FastSES': alpha must be between 0 and 1, got 1.5"),
    ],
)
def test_bad_parameters_are_config_errors_naming_them(
    name: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        create_model(name, params)
