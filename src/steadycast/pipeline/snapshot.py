"""The snapshot stage: the pipeline's observations copied into Parquet partitions of series.

The run holds the store only for this read; every later stage works from the snapshot, so an
hours-long run never locks out an ingest, a status or the server. A run continued after an
approval works from its own snapshot, found again here and checked whole against its record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from steadycast.config import PipelineConfig
from steadycast.engines.local import read_partition
from steadycast.errors import NotFoundError, SteadycastError
from steadycast.ingestion.timegrid import TIME_RANGE, in_range_sql
from steadycast.ops import advice
from steadycast.pipeline.scope import RunScope
from steadycast.storage import covariates, runlog, store
from steadycast.workspace import Workspace

__all__ = [
    "Snapshot",
    "data_identity",
    "read_snapshot_partition",
    "snapshot_of",
    "take_snapshot",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """What the snapshot stage hands on: its Parquet files (``part=K/*.parquet``), the newest
    time in it, and the hash of the batches it holds (a resumed run must match it)."""

    parts: tuple[Path, ...]
    newest: str | None
    sha256: str | None


def take_snapshot(scope: RunScope) -> Snapshot:
    """Snapshot stage: copy the observations out, record the snapshot's hash with the run, and
    stop the run (naming the command) when there is nothing to forecast."""
    with scope.stage("snapshot") as rec:
        parts = _copy_out(scope.ws, scope.cfg, scope.run_dir, rec)
    snap = Snapshot(tuple(parts), rec.detail.get("newest"), rec.detail["snapshot_sha256"])
    runlog.update_run(scope.ws.control_path, scope.run_id, snapshot_sha256=snap.sha256)
    if not parts:
        # A pipeline with a configured source is ingested with no file argument.
        source = scope.cfg.source
        files = () if (source.path or source.query) else ("FILE",)
        raise SteadycastError(
            f"pipeline {scope.pipeline!r} has no stored observations; ingest data first: "
            f"`{advice.command(scope.ws.root, 'ingest', scope.pipeline, *files)}`"
        )
    return snap


def _copy_out(
    ws: Workspace, cfg: PipelineConfig, run_dir: Path, record: runlog.StageRecord
) -> list[Path]:
    """Copy the pipeline's observations into Parquet partitions of series, then let go."""
    target = run_dir / "snapshot"
    shutil.rmtree(target, ignore_errors=True)
    with store.reading(
        ws.store_path, memory_limit=cfg.ingest.memory_limit, temp_dir=ws.temp_dir
    ) as con:
        # Rows stored by an older version with a time the forecast cannot hold (year 1, 9999)
        # are left out, counted and named, instead of failing every run.
        ok = in_range_sql("ds")
        usable = f"pipeline = ? AND {ok}"
        row = con.execute(
            f"SELECT count(*) FILTER (WHERE NOT {ok}), count(*) FILTER (WHERE {ok}), "
            f"count(DISTINCT unique_id) FILTER (WHERE {ok}), max(ds) FILTER (WHERE {ok}) "
            "FROM observations WHERE pipeline = ?",
            [cfg.name],
        ).fetchone()
        excluded, rows, series = (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)
        record.detail["newest"] = str(row[3]) if row and row[3] is not None else None
        if excluded:
            named = [
                str(r[0])
                for r in con.execute(
                    f"SELECT DISTINCT unique_id FROM observations WHERE pipeline = ? AND NOT {ok} "
                    "ORDER BY 1 LIMIT 5",
                    [cfg.name],
                ).fetchall()
            ]
            record.rows_rejected = excluded
            record.detail["excluded"] = {
                "reason": "time_out_of_range",
                "rows": excluded,
                "series": named,
                "why": f"{excluded} stored row(s) (series {', '.join(named)}) have a time outside "
                f"{TIME_RANGE}, which a forecast cannot hold; they are left out of the run and "
                "the rest of each series is used",
            }
            log.warning("%s: %s", cfg.name, record.detail["excluded"]["why"])
        identity = _batches_sha256(con, cfg.name)
        record.detail["covariate_rows"] = covariates.copy_out(con, cfg, run_dir)
        if series:
            parts = max(1, math.ceil(series / cfg.forecast.partition_size))
            target.mkdir(parents=True)
            # hash() is deterministic, so a series lands in the same partition on every engine.
            con.execute(
                f"COPY (SELECT unique_id, ds, y, CAST(hash(unique_id) % {parts} AS INTEGER) AS part "
                f"FROM observations WHERE {usable} ORDER BY part, unique_id, ds) "
                f"TO '{target}' (FORMAT parquet, PARTITION_BY (part))",
                [cfg.name],
            )
    record.rows_in, record.rows_out = rows + excluded, rows
    record.series_in = record.series_out = series
    record.detail["snapshot_sha256"] = identity
    return sorted(target.glob("part=*/*.parquet")) if series else []


def data_identity(ws: Workspace, cfg: PipelineConfig) -> str:
    """The hash a snapshot taken now would record, without copying anything out: what a run
    compares with the last run's to know whether any data arrived since."""
    with store.reading(ws.store_path, temp_dir=ws.temp_dir) as con:
        return _batches_sha256(con, cfg.name)


def _batches_sha256(con: Any, pipeline: str) -> str:
    """The hash of the batch ids the pipeline's observations (and covariates) came from:
    batches are identified by their content, so equal hashes mean equal data. A batch that
    stored no new or corrected value (a header-only file, rows all quarantined, a replay in
    another order) left the data as it was, so it is not part of its identity."""
    # Covariate batches count too: a run resumes (or is skipped) only on the same covariates.
    batches = con.execute(
        "SELECT batch_id FROM batches WHERE (pipeline = ? OR starts_with(pipeline, ?)) "
        "AND (rows_new > 0 OR rows_corrected > 0) ORDER BY batch_id",
        [pipeline, f"{pipeline}:covariate:"],
    ).fetchall()
    return hashlib.sha256(",".join(b[0] for b in batches).encode()).hexdigest()


def read_snapshot_partition(directory: Path) -> pd.DataFrame:
    """One partition's snapshot rows: every file of its directory (DuckDB writes a large
    partition as several files, and a series may continue from one file into the next)."""
    frame = read_partition(directory)
    frame["unique_id"] = frame["unique_id"].astype(str)
    frame["ds"] = frame["ds"].astype("datetime64[ns]")
    return frame


def snapshot_of(ws: Workspace, run: dict[str, Any]) -> Snapshot:
    """The snapshot a run read, checked whole against its record, and its newest time; a
    snapshot that is gone (or incomplete) cannot be continued."""
    run_id = run["run_id"]
    target = ws.root / "runs" / run_id / "snapshot"
    stages = {s["name"]: s for s in run.get("stages", [])}
    snap = stages.get("snapshot") or {}
    parts = sorted(target.glob("part=*/*.parquet"))
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    if not parts or rows != int(snap.get("rows_out") or 0):
        state = "incomplete" if parts else "gone"
        raise NotFoundError(
            f"the snapshot of run {run_id} is {state} ({target}), so the run cannot be continued "
            f"past its data checks; run the pipeline again ({advice.command(ws.root, 'run', run['pipeline'])})"
        )
    snap_detail = json.loads(snap.get("detail") or "{}")
    return Snapshot(tuple(parts), snap_detail.get("newest"), run.get("snapshot_sha256"))
