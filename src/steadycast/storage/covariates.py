"""Covariates of a run: the stored covariate columns copied out with the run's snapshot.

A run reads the store once, at its start; the covariates it forecasts with are read in the
same connection, into one Parquet file beside the snapshot (``covariates.parquet``: the
covariate series' id as ``covariate_id``, ``ds`` and one column per declared covariate), so
every partition, on any engine, joins the same values.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from steadycast.config import PipelineConfig
from steadycast.ingestion.timegrid import in_range_sql

if TYPE_CHECKING:
    import duckdb

__all__ = ["COVARIATES_FILE", "copy_out", "covariate_source", "read_for_run"]

COVARIATES_FILE = "covariates.parquet"
COVARIATE_ID = "covariate_id"
SEPARATOR = ":covariate:"


def covariate_source(pipeline: str, column: str) -> str:
    """The name a covariate column's rows are stored under (never a pipeline file's name)."""
    return f"{pipeline}{SEPARATOR}{column}"


def copy_out(con: duckdb.DuckDBPyConnection, cfg: PipelineConfig, run_dir: Path) -> int:
    """Write the pipeline's covariates to ``run_dir/covariates.parquet``; returns its rows
    (0, and no file, when the pipeline declares none)."""
    target = run_dir / COVARIATES_FILE
    target.unlink(missing_ok=True)
    columns = cfg.covariates.columns
    if not columns:
        return 0
    parts = [
        con.execute(
            f'SELECT unique_id AS {COVARIATE_ID}, ds, y AS "{column}" FROM observations '
            f"WHERE pipeline = ? AND {in_range_sql('ds')}",
            [covariate_source(cfg.name, column)],
        ).df()
        for column in columns
    ]
    frame = parts[0]
    for part in parts[1:]:
        frame = frame.merge(part, on=[COVARIATE_ID, "ds"], how="outer")
    frame = frame.sort_values([COVARIATE_ID, "ds"], kind="stable").reset_index(drop=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(target, index=False)
    return len(frame)


def read_for_run(run_dir: Path, cfg: PipelineConfig) -> pd.DataFrame | None:
    """The covariates a run copied out, or None when the pipeline declares none."""
    path = run_dir / COVARIATES_FILE
    if not cfg.covariates.columns or not path.exists():
        return None
    frame = pd.read_parquet(path)
    frame[COVARIATE_ID] = frame[COVARIATE_ID].astype(str)
    frame["ds"] = frame["ds"].astype("datetime64[ns]")
    return frame
