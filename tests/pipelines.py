"""The pipeline file of the tests, written in one place: each test names only what it varies.

A file holds the fixed ``[source]`` and ``[series]`` tables, then ``[models]`` and ``[forecast]``
when given, then ``extra`` (more tables, written as they would be in a user's file).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

#: The cheap built-in models the small end-to-end fleets are forecast with.
CHEAP_MODELS = ("Naive", "SeasonalNaive", "HistoricAverage", "SES")


def _value(value: object) -> str:
    """A TOML value: strings quoted, lists of numbers or strings as arrays."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Sequence):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def pipeline_toml(
    *,
    id_column: str = "meter_id",
    time_column: str = "timestamp",
    value_column: str = "kwh",
    timezone: str | None = None,
    time_format: str | None = None,
    frequency: str = "1h",
    horizon: int = 12,
    season_lengths: Sequence[int] | str | None = (24,),
    min_value: float | None = 0,
    max_value: float | None = None,
    models: Sequence[str] | None = None,
    forecast: Mapping[str, int] | None = None,
    extra: str = "",
) -> str:
    """The text of ``pipelines/NAME.toml``; ``None`` leaves a key out (its default applies)."""
    source = {
        "id_column": id_column,
        "time_column": time_column,
        "value_column": value_column,
        "timezone": timezone,
        "time_format": time_format,
    }
    series = {"frequency": _value(frequency), "horizon": str(horizon)}
    if season_lengths is not None:
        series["season_lengths"] = (
            season_lengths if isinstance(season_lengths, str) else _value(list(season_lengths))
        )
    series |= {
        k: str(v) for k, v in (("min_value", min_value), ("max_value", max_value)) if v is not None
    }
    lines = ["[source]", *(f"{k} = {_value(v)}" for k, v in source.items() if v is not None)]
    lines += ["", "[series]", *(f"{k} = {v}" for k, v in series.items())]
    if models is not None:
        lines += ["", "[models]", f"candidates = {_value(list(models))}"]
    if forecast:
        lines += ["", "[forecast]", *(f"{k} = {_value(v)}" for k, v in forecast.items())]
    return "\n".join(lines) + "\n" + (f"\n{extra}" if extra else "")
