"""Covariate files: future-known inputs (weather, holidays, any column) ingested as a checked
source of their own.

Each declared covariate column is stored as its own series set, under the pipeline's covariate
namespace (``covariate_source``), through the same batch transaction as observations: every row
stored or quarantined with a reason naming the file and line, parity checked, the batch ledger
making a re-ingest a skip, corrections kept in history. A covariate row dated in the future (a
weather forecast) is an ordinary row: it is what the horizon is joined to.
"""

from __future__ import annotations

from pathlib import Path

from steadycast.config import PipelineConfig, SeriesConfig, SourceConfig
from steadycast.errors import ConfigError
from steadycast.ingestion._progress import Progress
from steadycast.ingestion.batch import BatchResult, ingest_file
from steadycast.storage.covariates import covariate_source
from steadycast.workspace import Workspace

__all__ = ["covariate_config", "covariate_source", "ingest_covariates"]


def covariate_config(cfg: PipelineConfig, column: str) -> PipelineConfig:
    """The pipeline configuration that ingests one covariate column of a covariate file: its id
    and time columns, the pipeline's frequency and time zone, the column's allowed range."""
    cov = cfg.covariates
    bounds = cov.ranges.get(column)
    low, high = (bounds[0], bounds[1]) if bounds else (None, None)
    source = SourceConfig(
        id_column=cov.id_column or cfg.source.id_column,
        time_column=cov.time_column or cfg.source.time_column,
        value_column=column,
        timezone=cfg.source.timezone,
        time_format=cfg.source.time_format,
    )
    series = SeriesConfig(
        frequency=cfg.series.frequency,
        horizon=cfg.series.horizon,
        season_lengths=list(cfg.series.season_lengths),
        min_value=low,
        max_value=high,
    )
    return cfg.model_copy(
        update={"name": covariate_source(cfg.name, column), "source": source, "series": series}
    )


def ingest_covariates(
    ws: Workspace, cfg: PipelineConfig, path: Path, progress: Progress | None = None
) -> list[tuple[str, BatchResult]]:
    """Ingest one covariate file: one batch per declared column, each checked on its own (a bad
    temperature quarantines that row's temperature, not its other columns)."""
    if not cfg.covariates.columns:
        raise ConfigError(
            f"pipeline {cfg.name!r} declares no covariates; add a [covariates] table with "
            'columns = ["..."] to its pipeline file (see docs/covariates.md)'
        )
    return [
        (column, ingest_file(ws, covariate_config(cfg, column), path, progress))
        for column in cfg.covariates.columns
    ]
