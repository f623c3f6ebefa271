"""The exact text of quarantined rows, as the file holds it, so a person grepping finds it.

For CSV the lines are read back from the file (``rawlines.row_lines``) in a thread while the
good rows are written; Parquet has no lines, so the row's fields are joined by commas.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import duckdb
import pandas as pd

from steadycast.config import PipelineConfig
from steadycast.ingestion._read import mapped_columns
from steadycast.ingestion._sql import literal
from steadycast.ingestion.rawlines import row_lines


def _exact_fields(
    con: duckdb.DuckDBPyConnection, cfg: PipelineConfig, path: Path, rec: str
) -> pd.DataFrame | None:
    """For Parquet (no lines): the quarantined rows' id, time and value as the file holds them,
    as text joined by commas (before any parsing or conversion to UTC)."""
    reader = f"read_parquet({literal(str(path))}, file_row_number = true)"
    columns = mapped_columns(con, f"read_parquet({literal(str(path))})", path, "parquet", cfg)
    found = con.execute(f"""
        SELECT p.file_row_number AS rec, p.file_row_number + 1 AS line,
               concat_ws(',', coalesce(p.id_raw, ''), coalesce(p.t_raw, ''), coalesce(p.v_raw, ''))
                 AS raw
        FROM (SELECT file_row_number, {columns} FROM {reader}) p
        WHERE p.file_row_number IN (SELECT {rec} FROM checked c WHERE c.code IS NOT NULL)
    """).fetchdf()
    return found if len(found) else None


def read_exact_lines(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str, rec: str, has_rejects: bool
) -> Future[pd.DataFrame | None] | None:
    """Start reading the line number and exact text of the quarantined rows of ``checked``
    (``rec``: row index) back from the file, in a thread; None when no row is quarantined or
    the file has no lines (Parquet)."""
    if fmt == "parquet":
        return None
    recs = [
        int(x[0])
        for x in con.execute(f"SELECT {rec} FROM checked c WHERE c.code IS NOT NULL").fetchall()
    ]
    if not recs:
        return None
    rejected = (
        [int(x[0]) for x in con.execute("SELECT line FROM rej").fetchall()] if has_rejects else []
    )
    [(rows,)] = con.execute("SELECT count(*) FROM checked").fetchall()
    pool = ThreadPoolExecutor(1, thread_name_prefix="steadycast-raw")
    reading = pool.submit(_exact_lines, path, fmt, rejected, recs, int(rows))
    pool.shutdown(wait=False)  # the thread ends with its one task
    return reading


def _exact_lines(
    path: Path, fmt: str, rejected: list[int], recs: list[int], rows: int
) -> pd.DataFrame | None:
    """The quarantined rows' line numbers and text as a table to join; None when lines cannot
    name rows."""
    found = row_lines(path, fmt, rejected, recs, rows)
    if found is None:
        return None
    return pd.DataFrame(
        {
            "rec": pd.Series(list(found), dtype="int64"),
            "line": pd.Series([v[0] for v in found.values()], dtype="int64"),
            "raw": pd.Series([v[1] for v in found.values()], dtype="object"),
        }
    )


def exact_text(
    con: duckdb.DuckDBPyConnection,
    cfg: PipelineConfig,
    path: Path,
    fmt: str,
    rec: str,
    reading: Future[pd.DataFrame | None] | None,
) -> pd.DataFrame | None:
    """The exact text of the quarantined rows (``rec``, ``line``, ``raw``): the lines
    ``reading`` read back from a CSV file, or the fields of a Parquet file; None when there is
    nothing to join."""
    if reading is not None:
        return reading.result()
    return _exact_fields(con, cfg, path, rec) if fmt == "parquet" else None
