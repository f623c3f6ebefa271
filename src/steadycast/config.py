"""Pipeline configuration: ``pipelines/NAME.toml`` parsed into validated, typed objects.

The ``[source]`` and ``[series]`` tables are part of the public contract. Every other table has a
default for every key, so a pipeline with only those two tables runs. Unknown keys are errors:
a typo must not silently fall back to a default.
"""

from __future__ import annotations

import re
import tomllib
import warnings
import zoneinfo
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from steadycast.errors import ConfigError

PIPELINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Table):
    """How the columns of an input file map onto ``unique_id, ds, y``."""

    id_column: str = "unique_id"
    time_column: str = "ds"
    value_column: str = "y"
    timezone: str = "UTC"
    time_format: str = ""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a time zone; use an IANA name such as UTC, Europe/London"
            ) from None
        return value


class SeriesConfig(_Table):
    """The shape of every series: frequency, horizon, seasonality and allowed values."""

    frequency: str
    horizon: int = Field(gt=0, le=100_000)
    season_lengths: list[int] = Field(default_factory=list)
    min_value: float | None = None
    max_value: float | None = None

    @field_validator("frequency")
    @classmethod
    def _pandas_alias(cls, value: str) -> str:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                offset = pd.tseries.frequencies.to_offset(value)
        except (ValueError, TypeError):
            offset = None
        if offset is None or " " in value:
            raise ValueError(
                f"{value!r} is not a frequency; use a pandas offset alias such as 30min, 1h, 1D"
            )
        return value

    @field_validator("season_lengths")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(v < 1 for v in value):
            raise ValueError(f"{value!r}: every season length must be a whole number >= 1")
        return value

    @model_validator(mode="after")
    def _range(self) -> SeriesConfig:
        lo, hi = self.min_value, self.max_value
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min_value {lo} is above max_value {hi}")
        return self

    @property
    def season_length(self) -> int:
        """The main seasonal period (the first listed), 1 when the series has none."""
        return self.season_lengths[0] if self.season_lengths else 1


class IngestConfig(_Table):
    """Row-level policy for ingest."""

    snap_to_frequency: bool = False
    delimiter: str = ""  # empty: detected
    # Rows per DuckDB memory budget; files larger than memory stream through DuckDB's spilling.
    memory_limit: str = "1GB"


class ModelsConfig(_Table):
    """Which models compete for each series."""

    candidates: list[str] = Field(
        default_factory=lambda: ["SeasonalNaive", "AutoETS", "AutoTheta", "MSTL", "LightGBM"]
    )
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    levels: list[int] = Field(default_factory=lambda: [80, 95])
    plugins: bool = True
    disabled_plugins: list[str] = Field(default_factory=list)

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: list[int]) -> list[int]:
        if any(not 0 < v < 100 for v in value):
            raise ValueError(f"{value!r}: interval levels are percentages between 1 and 99")
        return sorted(set(value))


class BacktestConfig(_Table):
    """Rolling-origin cross-validation and selection."""

    windows: int = Field(default=2, ge=1, le=50)
    step: int = Field(default=0, ge=0)  # 0: one horizon
    metric: Literal["mase", "smape", "rmsse"] = "mase"
    ensemble_top_k: int = Field(default=3, ge=0, le=10)  # 0 or 1: no ensemble


class ForecastConfig(_Table):
    """Isolation and limits for model code."""

    timeout_s: float = Field(default=600.0, gt=0)
    memory_mb: int = Field(default=4096, ge=256)
    partition_size: int = Field(default=500, ge=1)
    workers: int = Field(default=0, ge=0)  # 0: one per core


class EngineConfig(_Table):
    name: Literal["local", "spark"] = "local"
    spark_master: str = "local[2]"


class PipelineConfig(_Table):
    """A whole pipeline file."""

    name: str
    source: SourceConfig
    series: SeriesConfig
    ingest: IngestConfig = IngestConfig()
    models: ModelsConfig = ModelsConfig()
    backtest: BacktestConfig = BacktestConfig()
    forecast: ForecastConfig = ForecastConfig()
    engine: EngineConfig = EngineConfig()


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == "extra_forbidden":
        return f"{where}: unknown key (check its spelling and the table it is in)"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    if kind not in ("value_error",):
        message = f"{error.get('input')!r}: {message}"
    return f"{where}: {message}"


def parse_pipeline(data: dict[str, Any], name: str, origin: str) -> PipelineConfig:
    """Validate a parsed TOML document; errors name ``origin``, the key and what is allowed."""
    if not PIPELINE_NAME.match(name):
        raise ConfigError(
            f"{origin}: {name!r} is not a pipeline name; use letters, digits, '_', '-', '.'"
        )
    try:
        return PipelineConfig.model_validate({"name": name, **data})
    except ValidationError as exc:
        lines = [f"{origin}: {_describe(err)}" for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def load_pipeline(path: Path, display: str | None = None) -> PipelineConfig:
    """Read and validate one pipeline file."""
    origin = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{origin}: no such pipeline file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{origin}: cannot be read ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML ({exc})") from None
    return parse_pipeline(data, path.stem, origin)
