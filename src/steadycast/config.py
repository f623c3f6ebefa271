"""Pipeline configuration: ``pipelines/NAME.toml`` parsed into validated, typed objects.

The ``[source]`` and ``[series]`` tables are part of the public contract. Every other table has a
default for every key, so a pipeline with only those two tables runs. Unknown keys are errors:
a typo must not silently fall back to a default.
"""

from __future__ import annotations

import datetime
import re
import tomllib
import warnings
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from steadycast.errors import ConfigError
from steadycast.quality.severity import Severity

if TYPE_CHECKING:
    import pandas as pd

PIPELINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Table(BaseModel):
    # Files are validated in strict mode (see ``parse_pipeline``); NaN and infinity, which TOML
    # can spell, are never a sensible limit.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _name(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    return value


class SourceConfig(_Table):
    """How the columns of an input file map onto ``unique_id, ds, y``, and where
    ``steadycast ingest NAME`` with no files reads from (docs/ingest.md, "Sources")."""

    id_column: str = "unique_id"
    time_column: str = "ds"
    value_column: str = "y"
    timezone: str = "UTC"
    time_format: str = ""
    # A file, folder, glob or s3:// URL; relative to the workspace folder.
    path: str = ""
    # A SQL query whose rows are the batch, run against ``database`` (postgresql://...).
    query: str = ""
    database: str = ""

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

    @field_validator("id_column", "time_column", "value_column")
    @classmethod
    def _column(cls, value: str) -> str:
        return _name(value, "a column name")

    @field_validator("time_format")
    @classmethod
    def _strftime(cls, value: str) -> str:
        if value and "%" not in value:
            raise ValueError(
                f"{value!r} has no strftime directive; write it like '%Y-%m-%d %H:%M', "
                "or leave it empty to infer the format"
            )
        return value

    @field_validator("database")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not value:
            return value
        from urllib.parse import parse_qs, urlsplit

        url = urlsplit(value)
        if url.password is not None or "password" in parse_qs(url.query):
            # The pipeline file is read by everyone who reads the config, and the batch ledger
            # names the source: a secret has no place in either (nor in this message).
            raise ValueError(
                "database holds a password; remove it from the URL and give it to libpq "
                "instead, in the PGPASSWORD environment variable or a ~/.pgpass file"
            )
        try:
            url.port  # noqa: B018 - a port that is not a number raises here
        except ValueError:
            raise ValueError(f"{value!r} has a port that is not a number") from None
        if url.scheme not in ("postgresql", "postgres"):
            raise ValueError(
                f"{value!r} is not a PostgreSQL URL; write it like "
                "'postgresql://user@host:5432/dbname'"
            )
        return value

    @model_validator(mode="after")
    def _distinct(self) -> SourceConfig:
        columns = [self.id_column, self.time_column, self.value_column]
        if len(set(columns)) < 3:
            raise ValueError(
                f"id_column, time_column and value_column must be three different columns "
                f"(got {columns!r})"
            )
        return self

    @model_validator(mode="after")
    def _one_source(self) -> SourceConfig:
        if self.path and self.query:
            raise ValueError(
                "path and query are two different sources; keep one of them (a pipeline reads "
                "either files or a query)"
            )
        if self.query and not self.database:
            raise ValueError(
                "query needs database = 'postgresql://user@host:5432/dbname' to run against"
            )
        if self.database and not self.query:
            raise ValueError("database is set without a query; add query = 'SELECT ...'")
        return self


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
        import pandas as pd  # loaded on first use: ``import steadycast`` stays light

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
        if offset.n <= 0:
            raise ValueError(
                f"{value!r} is not a positive frequency; use a step forward in time such as "
                "30min, 1h, 1D"
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

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(value) > 1:
            raise ValueError(
                f"{value!r}: a delimiter is one character, such as ',' ';' or '\\t'; "
                "leave it empty to detect it"
            )
        return value

    @field_validator("memory_limit")
    @classmethod
    def _size(cls, value: str) -> str:
        if not _SIZE.match(value):
            raise ValueError(f"{value!r} is not a memory size; write it like '512MB' or '2GB'")
        return value


class ModelsConfig(_Table):
    """Which models compete for each series, and which tier of them (see steadycast.forecasting.tiers)."""

    # Not named in the pipeline file: the default pool of the pipeline's frequency
    # (steadycast.forecasting.pools), resolved by PipelineConfig. This list serves only a
    # ModelsConfig built on its own, without a frequency.
    candidates: list[str] = Field(
        default_factory=lambda: ["SeasonalNaive", "AutoETS", "AutoTheta", "MSTL", "LightGBM"]
    )
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    levels: list[int] = Field(default_factory=lambda: [80, 95])
    plugins: bool = True
    disabled_plugins: list[str] = Field(default_factory=list)
    # "full": the candidates above; "fast": the vectorised fast tier; "auto": the full tier for
    # as many series as the time budget allows (largest first), the fast tier for the rest.
    tier: Literal["full", "fast", "auto"] = "full"
    # Cheap and diverse members, combined like the full tier's: on daily development data this
    # pool costs what the naive family did (about 2.4 ms of CPU a series, backtest included)
    # and cuts MASE by 12-17% (bench/RESULTS.md, "Scale").
    fast_candidates: list[str] = Field(
        default_factory=lambda: ["FastSeasonalNaive", "FastTheta", "Card"]
    )
    time_budget: str = ""
    full_share: float | None = Field(default=None, ge=0, le=1)

    @field_validator("candidates", "fast_candidates")
    @classmethod
    def _some_models(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one model (steadycast models lists them)")
        for name in value:
            _name(name, "a model name")
        return value

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: list[int]) -> list[int]:
        if any(not 0 < v < 100 for v in value):
            raise ValueError(f"{value!r}: interval levels are percentages between 1 and 99")
        return sorted(set(value))

    @field_validator("time_budget")
    @classmethod
    def _budget(cls, value: str) -> str:
        return _duration(value, "time_budget")

    @model_validator(mode="after")
    def _auto_needs_a_budget(self) -> ModelsConfig:
        if self.tier == "auto" and not self.time_budget and self.full_share is None:
            raise ValueError(
                "tier = 'auto' needs time_budget (e.g. '30min') or full_share (0 to 1)"
            )
        return self


class BacktestConfig(_Table):
    """Rolling-origin cross-validation and selection."""

    windows: int = Field(default=3, ge=1, le=50)  # short series get fewer
    step: int = Field(default=0, ge=0)  # 0: auto, whole weeks or days (backtest.auto_step)
    metric: Literal["mase", "smape", "rmsse"] = "mase"
    ensemble_top_k: int = Field(default=3, ge=0, le=10)  # 0 or 1: no ensemble
    # How the top k are combined (selection.combine); "median" and "trimmed" shrug off one
    # wildly wrong member, but on development data the mean of the top 3 scored best
    # (bench/combinations.py).
    combination: Literal["mean", "median", "trimmed"] = "mean"


class ForecastConfig(_Table):
    """Isolation and limits for model code."""

    timeout_s: float = Field(default=600.0, gt=0)
    memory_mb: int = Field(default=4096, ge=256)
    partition_size: int = Field(default=500, ge=1)
    workers: int = Field(default=0, ge=0)  # 0: one per core


class EngineConfig(_Table):
    name: Literal["local", "spark"] = "local"
    spark_master: str = "local[2]"

    @field_validator("spark_master")
    @classmethod
    def _master(cls, value: str) -> str:
        return _name(value, "spark_master")


# ---------------------------------------------------------------------------------------------
# Data-quality checks, the gate and alerts
# ---------------------------------------------------------------------------------------------

_SEVERITY_CHOICES = [repr(s.value) for s in Severity]


def _severity(value: Any) -> Severity:
    """A severity from the file: TOML gives a string, which strict validation would refuse
    for an enum; anything else is reported like any other key with fixed choices."""
    try:
        return Severity.parse(value)
    except ValueError:
        raise PydanticCustomError(
            "literal_error",
            "Input should be {expected}",
            {"expected": ", ".join(_SEVERITY_CHOICES[:-1]) + " or " + _SEVERITY_CHOICES[-1]},
        ) from None


# A severity key of a pipeline file: ``quality.severity.Severity``, from its string value.
SeverityField = Annotated[Severity, BeforeValidator(_severity)]
Policy = Literal["warn", "exclude", "stop"]


def _duration(value: str, key: str) -> str:
    if not value:
        return value
    import pandas as pd

    try:
        delta = pd.Timedelta(value)
    except (ValueError, TypeError):
        raise ValueError(
            f"{value!r} is not a duration; use a pandas Timedelta such as '36h', '2D', '90min'"
        ) from None
    if delta <= pd.Timedelta(0):
        raise ValueError(f"{key} {value!r} must be a positive duration")
    return value


class _CheckTable(_Table):
    """What every check shares: on or off, how bad a failure is, and what it does.

    ``policy`` decides the effect of a failure: ``warn`` records it, ``exclude`` drops the series
    from this run, ``stop`` holds the run. A check with ``exclude`` or ``stop`` is *blocking*.
    """

    enabled: bool = True
    severity: SeverityField = Severity.WARNING
    policy: Policy = "warn"


class _RunLevelCheckTable(_CheckTable):
    """A check over the run as a whole: there is no single series to exclude."""

    @field_validator("policy")
    @classmethod
    def _no_exclude(cls, value: str) -> str:
        if value == "exclude":
            raise ValueError(
                "'exclude' drops one series, but this check is about the whole run; "
                "use 'warn' or 'stop'"
            )
        return value


class FreshnessCheckConfig(_CheckTable):
    """A series whose latest data lags behind the rest of the pipeline (or the clock)."""

    max_lag_steps: int = Field(default=0, ge=0)  # 0: auto, max(horizon, main season)
    max_age: str = ""  # e.g. "2D": also fail when latest data is older than this; "" off

    @field_validator("max_age")
    @classmethod
    def _age(cls, value: str) -> str:
        return _duration(value, "max_age")


class CompletenessCheckConfig(_CheckTable):
    """Missing steps between a series' first and last observation, and its longest gap."""

    max_missing_share: float = Field(default=0.2, ge=0.0, le=1.0)
    max_gap_steps: int = Field(default=0, ge=0)  # 0: auto, max(horizon, main season)
    lookback_steps: int = Field(default=0, ge=0)  # 0: auto, max(28 x main season, 4 x horizon)


class FlatLineCheckConfig(_CheckTable):
    """A run of identical readings (a stuck meter), zero runs included."""

    max_steps: int = Field(default=0, ge=0)  # 0: auto, 2 x main season, at least 12
    include_zero: bool = True  # runs of exact zeros count as flat lines
    allow_constant: bool = False  # a series constant over all its history is not flagged
    lookback_steps: int = Field(default=0, ge=0)  # 0: auto, 7 x max_steps


class SpikesCheckConfig(_CheckTable):
    """A value far from its seasonal neighbours, by a robust z-score."""

    severity: SeverityField = Severity.INFO
    max_z: float = Field(default=12.0, gt=0)
    lookback_steps: int = Field(default=0, ge=0)  # 0: auto, 7 x main season, at least 28


class LevelShiftCheckConfig(_CheckTable):
    """A lasting jump in a series' level; training then starts after it."""

    severity: SeverityField = Severity.INFO
    min_z: float = Field(default=8.0, gt=0)
    min_relative_change: float = Field(default=0.4, gt=0.0, le=1.0)
    window_steps: int = Field(default=0, ge=0)  # 0: auto, see docs/configuration.md
    cut_training: bool = True


class FeedFaultCheckConfig(_CheckTable):
    """The newest delivery broken the way real feeds break (a unit change, zeros, a meter's
    cumulative register, a stuck or sign-flipped feed, a time-zone shift), judged against the
    series' own recent history. A faulty series is excluded (its last good forecast stays
    served); faults in more than ``max_share`` of the fleet hold the run."""

    severity: SeverityField = Severity.ERROR
    policy: Policy = "exclude"
    max_ratio: float = Field(default=50.0, gt=1.0)  # scale: new typical magnitude vs history
    max_share: float = Field(default=0.3, ge=0.0, le=1.0)  # fleet share that holds the run
    min_series: int = Field(default=2, ge=1)  # ...and at least this many faulty series
    periods: int = Field(default=4, ge=1)  # reference periods (e.g. weeks) of history
    min_steps: int = Field(default=0, ge=0)  # 0: auto, max(4, main season / 4)
    window_steps: int = Field(default=0, ge=0)  # 0: auto, data newer than the last publish
    max_shift_hours: int = Field(default=12, ge=0)  # time-zone shifts tried, each way
    shift_gain: float = Field(default=0.5, gt=0.0, lt=1.0)  # best shift's error / unshifted


class VolumeParityCheckConfig(_RunLevelCheckTable):
    """Series or rows that vanished or appeared in bulk since the last published run."""

    severity: SeverityField = Severity.ERROR
    policy: Policy = "stop"
    max_vanished_share: float = Field(default=0.2, ge=0.0, le=1.0)
    max_appeared_share: float = Field(default=1.0, ge=0.0)
    max_rows_drop_share: float = Field(default=0.2, ge=0.0, le=1.0)


class PassShareCheckConfig(_RunLevelCheckTable):
    """The share of series that pass every blocking or error check, against the last published
    run."""

    severity: SeverityField = Severity.ERROR
    policy: Policy = "stop"
    max_drop: float = Field(default=0.1, ge=0.0, le=1.0)  # in share points: 0.1 = 10 points
    min_share: float = Field(default=0.0, ge=0.0, le=1.0)


class ChecksConfig(_Table):
    """The ``check`` stage: one table per series-level data-quality check."""

    freshness: FreshnessCheckConfig = FreshnessCheckConfig()
    completeness: CompletenessCheckConfig = CompletenessCheckConfig()
    flat_line: FlatLineCheckConfig = FlatLineCheckConfig()
    spikes: SpikesCheckConfig = SpikesCheckConfig()
    level_shift: LevelShiftCheckConfig = LevelShiftCheckConfig()
    feed_fault: FeedFaultCheckConfig = FeedFaultCheckConfig()
    volume_parity: VolumeParityCheckConfig = VolumeParityCheckConfig()
    pass_share: PassShareCheckConfig = PassShareCheckConfig()


class GateRuleConfig(_Table):
    """A gate rule: on or off, and whether its failure holds the run (``blocking``) or is only
    recorded with the run."""

    enabled: bool = True
    blocking: bool = True


class FleetShareRule(GateRuleConfig):
    """A rule that holds the run when a large part of the fleet is affected: more than
    ``limit`` of the series, and at least ``min_series`` of them (a share of a handful of
    series says nothing about the fleet; a per-series problem gets a per-series remedy)."""

    limit: float = Field(default=0.2, ge=0.0, le=1.0)
    min_series: int = Field(default=3, ge=1)


class FallbackShareRule(FleetShareRule):
    pass


class TotalJumpRule(GateRuleConfig):
    limit: float = Field(default=0.5, gt=0.0)


class WorseThanNaiveRule(GateRuleConfig):
    limit: float = Field(default=0.3, ge=0.0, le=1.0)
    tolerance: float = Field(default=0.1, ge=0.0)
    baseline: str = "SeasonalNaive"

    @field_validator("baseline")
    @classmethod
    def _baseline(cls, value: str) -> str:
        return _name(value, "baseline")


class SharedRemedyRule(FleetShareRule):
    """A per-series problem the run fixes series by series (steadycast.quality.remedy); the run
    is held only when more than ``limit`` of the series (and ``min_series`` or more) needed
    the fix."""


class LevelVsHistoryRule(SharedRemedyRule):
    """A forecast whose typical magnitude is more than ``max_ratio`` times above or below its
    own history at the same positions."""

    max_ratio: float = Field(default=50.0, gt=1.0)


class SeriesWithoutForecastRule(GateRuleConfig):
    limit: float = Field(default=0.0, ge=0.0, le=1.0)


class GateConfig(_Table):
    """Circuit breakers over the run as a whole, between forecast and publish."""

    blocking_checks: GateRuleConfig = GateRuleConfig()
    fallback_share: FallbackShareRule = FallbackShareRule()
    non_finite: SharedRemedyRule = SharedRemedyRule()
    negative: SharedRemedyRule = SharedRemedyRule()
    level_vs_history: LevelVsHistoryRule = LevelVsHistoryRule()
    total_jump: TotalJumpRule = TotalJumpRule()
    worse_than_naive: WorseThanNaiveRule = WorseThanNaiveRule()
    series_without_forecast: SeriesWithoutForecastRule = SeriesWithoutForecastRule()


AlertEvent = Literal["incident.opened", "incident.resolved"]
_ALL_ALERT_EVENTS: tuple[AlertEvent, ...] = ("incident.opened", "incident.resolved")


class AlertsConfig(_Table):
    """Where incident alerts go: webhooks (Slack-compatible JSON) and/or a command."""

    webhook_url: list[str] = Field(default_factory=list)
    webhook_url_env: str = ""  # name of an environment variable holding one more webhook URL
    command: list[str] = Field(default_factory=list)  # argv, run without a shell
    retries: int = Field(default=3, ge=0, le=10)
    backoff_s: float = Field(default=1.0, ge=0.0, le=300.0)
    timeout_s: float = Field(default=10.0, gt=0.0, le=300.0)
    events: list[AlertEvent] = Field(default_factory=lambda: list(_ALL_ALERT_EVENTS))
    min_severity: SeverityField = Severity.WARNING
    max_per_run: int = Field(default=20, ge=1)  # beyond it, one summary alert per event
    # All attempts of one alert (retries and their waits) end by then; it is sent in the
    # background, so this bounds how long a failing channel keeps trying, never the run.
    deadline_s: float = Field(default=60.0, gt=0.0, le=3600.0)
    # The address people open the dashboard at (e.g. "https://forecasts.example.com"): each
    # alert links to its run's report and the pipeline's dashboard page. Without it, an alert
    # names the commands that show the same.
    base_url: str = ""

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(
                f"must start with http:// or https:// and name a host, e.g. "
                f"'https://forecasts.example.com' (got {value!r})"
            )
        return value

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, value: list[str]) -> list[str]:
        for number, url in enumerate(value, 1):
            if not re.match(r"^https?://[^/\s]+", url):
                # Not quoted: a webhook URL is a secret, and this one may be pasted without its
                # scheme.
                raise ValueError(
                    f"webhook URL number {number} must start with http:// or https:// and name "
                    "a host (the value is not shown: webhook URLs carry secrets)"
                )
        return value

    @field_validator("webhook_url_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if value and not _ENV_NAME.match(value):
            # Not quoted: a URL pasted here by mistake is a secret.
            raise ValueError(
                "must be the name of an environment variable (such as 'STEADYCAST_WEBHOOK'), "
                "not its value (the value is not shown: it may be a secret)"
            )
        return value

    @field_validator("command")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        if value and not value[0].strip():
            raise ValueError("the first item of command must name a program")
        return value


# ---------------------------------------------------------------------------------------------
# Monitoring: SLA and freshness, realised accuracy and drift
# ---------------------------------------------------------------------------------------------


def _clock_time(text: str) -> datetime.time | None:
    """``HH:MM`` (or ``H:MM``) on a 24-hour clock as a time; None for anything else (seconds,
    a zone, ``0900``), so a deadline is written one way in every pipeline file."""
    hour, colon, minute = text.partition(":")
    if not colon or not 1 <= len(hour) <= 2 or len(minute) != 2:
        return None
    try:
        return datetime.time.fromisoformat(f"{hour:0>2}:{minute}")
    except ValueError:
        return None


class SlaConfig(_Table):
    """When a pipeline's forecast must be out, and how old its newest data may be.

    The deadline is a wall-clock time in ``timezone`` every day; ``steadycast status`` and the
    incidents say whether the latest deadline was met, met late or missed (ops/sla.py).
    """

    enabled: bool = True
    deadline: str = ""  # "HH:MM" on a 24-hour clock; "" means no deadline
    timezone: str = "UTC"
    max_data_age: str = ""  # e.g. "36h": newest observation older than this is stale; "" off

    @field_validator("deadline")
    @classmethod
    def _clock(cls, value: str) -> str:
        value = value.strip()
        if value and _clock_time(value) is None:
            raise ValueError(
                f"{value!r} is not a time of day; use HH:MM on a 24-hour clock, such as '09:00'"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a time zone; use an IANA name such as UTC, Europe/London"
            ) from None
        return value

    @field_validator("max_data_age")
    @classmethod
    def _age(cls, value: str) -> str:
        return _duration(value, "max_data_age")

    @property
    def deadline_time(self) -> tuple[int, int] | None:
        """``(hour, minute)`` of the deadline, or None when there is none."""
        clock = _clock_time(self.deadline)
        return (clock.hour, clock.minute) if clock else None

    @property
    def max_age(self) -> pd.Timedelta | None:
        """``max_data_age`` as a Timedelta, or None when freshness is not watched."""
        import pandas as pd

        return pd.Timedelta(self.max_data_age) if self.max_data_age else None


class MonitorConfig(_Table):
    """Realised accuracy: scoring published releases once their actuals arrive, and drift."""

    enabled: bool = True
    # Realised error over what the backtest promised (pipeline's backtest metric) that opens a
    # drift incident; 2.0 = twice as bad as promised.
    drift_factor: float = Field(default=2.0, ge=1.0, le=1000.0)
    # Actuals a series needs before it is judged for drift; 0: auto, half the horizon (>= 1).
    min_points: int = Field(default=0, ge=0)
    # Share of judged series above drift_factor that opens drift:PIPELINE:series; 1.0 = off.
    series_share: float = Field(default=0.2, ge=0.0, le=1.0)
    # Newest releases looked at for (re)scoring when actuals arrive; older scores are kept.
    max_releases: int = Field(default=30, ge=1, le=10_000)


class CovariatesConfig(_Table):
    """Future-known inputs (weather, holidays, any column): their own checked source, joined to
    the series by id and time; see docs/covariates.md."""

    columns: list[str] = Field(default_factory=list)  # empty: no covariates
    id_column: str = ""  # empty: [source] id_column
    time_column: str = ""  # empty: [source] time_column
    # A series takes the covariate series named here, else the one with its own id, else
    # ``default_id`` (one covariate series for the whole fleet, e.g. one city's weather).
    series_map: dict[str, str] = Field(default_factory=dict)
    default_id: str = ""
    # Allowed values per column, [low, high]: a row outside is quarantined (units guard).
    ranges: dict[str, list[float]] = Field(default_factory=dict)
    # Covariate-aware models added to the candidates when columns are declared.
    models: list[str] = Field(default_factory=lambda: ["CovariateRegression"])

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: list[str]) -> list[str]:
        for column in value:
            _name(column, "a column name")
        if len(set(value)) < len(value):
            raise ValueError(f"a column is named twice in {value!r}")
        return value

    @model_validator(mode="after")
    def _ranges(self) -> CovariatesConfig:
        for column, bounds in self.ranges.items():
            if column not in self.columns:
                raise ValueError(f"ranges names {column!r}, which is not in columns")
            if len(bounds) != 2 or bounds[0] > bounds[1]:
                raise ValueError(f"ranges.{column} must be [low, high] (got {bounds!r})")
        return self


class PostgresSinkConfig(_Table):
    """A PostgreSQL table that holds the current release (swapped in one transaction)."""

    kind: Literal["postgresql"]
    # postgresql://user@host:port/dbname, without a password: libpq reads it from PGPASSWORD or
    # ~/.pgpass, so no secret is kept in the pipeline file or the run record.
    database: str
    table: str

    @field_validator("database")
    @classmethod
    def _database_url(cls, value: str) -> str:
        from steadycast._pg import url_problem

        problem = url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        # Checked here, not only when the sink writes, so `steadycast validate` names it.
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", value):
            raise ValueError(
                f"{value!r} is not a table name; write forecasts or analytics.forecasts "
                "(letters, digits and underscores)"
            )
        return value


class ParquetSinkConfig(_Table):
    """A Parquet dataset (a local folder or ``s3://bucket/prefix``) that receives each release."""

    kind: Literal["parquet"]
    path: str


SinkConfig = Annotated[PostgresSinkConfig | ParquetSinkConfig, Field(discriminator="kind")]


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
    checks: ChecksConfig = ChecksConfig()
    gate: GateConfig = GateConfig()
    alerts: AlertsConfig = AlertsConfig()
    sla: SlaConfig = SlaConfig()
    monitor: MonitorConfig = MonitorConfig()
    covariates: CovariatesConfig = CovariatesConfig()
    # Where each published release is also written ([[sinks]] tables; see docs/sinks.md).
    sinks: list[SinkConfig] = Field(default_factory=list)

    @field_validator("sinks")
    @classmethod
    def _sinks_once(cls, value: list[SinkConfig]) -> list[SinkConfig]:
        """A place named twice would be written twice and recorded once."""
        from urllib.parse import urlsplit

        seen: set[tuple[str, ...]] = set()
        for sink in value:
            key: tuple[str, ...]
            if isinstance(sink, PostgresSinkConfig):
                url = urlsplit(sink.database)
                key = ("postgresql", url.hostname or "", str(url.port or ""), url.path, sink.table)
                where = f"table {sink.table!r} of {sink.database.split('@')[-1]!r}"
            else:
                key = ("parquet", sink.path.rstrip("/"))
                where = f"path {sink.path!r}"
            if key in seen:
                raise ValueError(f"two [[sinks]] tables write to {where}; keep one")
            seen.add(key)
        return value

    @model_validator(mode="after")
    def _default_pool(self) -> PipelineConfig:
        """Candidates not named in the file: the pool of the pipeline's frequency, written into
        the config so every run records the list it used (``candidates_origin`` says so)."""
        if "candidates" in self.models.model_fields_set:
            return self
        from steadycast.forecasting import pools

        series = self.series
        params = pools.default_params(series.frequency, series.season_lengths)
        for name, own in self.models.params.items():
            params[name] = {**params.get(name, {}), **own}
        values = dict(self.models)
        values["candidates"] = pools.default_candidates(series.frequency, series.season_lengths)
        values["params"] = params
        # model_construct keeps ``candidates`` out of the fields set: the list stays marked as
        # the pool's, not the user's. The values are the pool table's, valid by construction.
        resolved = ModelsConfig.model_construct(self.models.model_fields_set, **values)
        object.__setattr__(self, "models", resolved)  # frozen: set once, while validating
        return self


def candidates_origin(cfg: PipelineConfig) -> str:
    """Where the pipeline's candidates come from, for ``steadycast validate`` and the docs."""
    if "candidates" in cfg.models.model_fields_set:
        return "named in the pipeline file"
    from steadycast.forecasting.pools import frequency_class

    return f"the default pool for {frequency_class(cfg.series.frequency)} data"


def _describe(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == "extra_forbidden":
        return f"{where}: unknown key (check its spelling and the table it is in)"
    if kind in _EXPECTED:
        value = error.get("input")
        hint = " (write it without quotes)" if isinstance(value, str) and kind in _NUMBERS else ""
        return (
            f"{where}: {_shown(value)} is {_toml_type(value)}, but this key needs "
            f"{_EXPECTED[kind]}{hint}"
        )
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    if kind not in ("value_error",):
        message = f"{_shown(error.get('input'))}: {message}"
    return f"{where}: {message}"


# What a key of each type needs, in TOML's words (strict validation: no silent coercion).
_EXPECTED = {
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a quoted string",
    "list_type": "a list such as [1, 2]",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "finite_number": "a finite number",
}
_NUMBERS = frozenset({"int_type", "float_type", "finite_number"})


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number" if value == value and abs(value) != float("inf") else "not finite"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _shown(value: Any) -> str:
    """The offending value, cut short (a table or list is described, not dumped)."""
    if isinstance(value, dict):
        return "the table"
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_pipeline(data: dict[str, Any], name: str, origin: str) -> PipelineConfig:
    """Validate a parsed TOML document; errors name ``origin``, the key and what is allowed."""
    if not PIPELINE_NAME.match(name):
        raise ConfigError(
            f"{origin}: {name!r} is not a pipeline name; use letters, digits, '_', '-', '.'"
        )
    try:
        # Strict: TOML already gives every value its natural type, so "24" where a number
        # belongs (or 1 where true/false does) is a mistake to report, not to coerce.
        return PipelineConfig.model_validate({"name": name, **data}, strict=True)
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


def parse_alerts(table: Any, origin: str) -> AlertsConfig:
    """The workspace's ``[alerts]`` table (in ``steadycast.toml``), validated like a pipeline's:
    the default channels of every pipeline without an ``[alerts]`` table of its own."""
    try:
        return AlertsConfig.model_validate(table, strict=True)
    except ValidationError as exc:
        lines = [
            f"{origin}: {_describe({**err, 'loc': ('alerts', *err['loc'])})}"
            for err in exc.errors()
        ]
        raise ConfigError("\n".join(lines)) from None


def has_own_alerts(cfg: PipelineConfig) -> bool:
    """Whether the pipeline file has an ``[alerts]`` table (which overrides the workspace's)."""
    return "alerts" in cfg.model_fields_set
