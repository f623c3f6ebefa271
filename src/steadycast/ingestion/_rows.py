"""From file to ``checked``: read, parse, place and check every row of a file, duplicates included.

DuckDB reads the file once; a file with a line too long to be a row is read again from a copy
where that line is a short stand-in (``_read.copy_short_lines``), so only that line is lost.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb

from steadycast.config import PipelineConfig
from steadycast.errors import InputFileError
from steadycast.ingestion._dedupe import dedupe
from steadycast.ingestion._placement import (
    choose_format,
    needs_grid_map,
    place,
    place_direct,
    staged_sql,
)
from steadycast.ingestion._progress import Progress, tracking
from steadycast.ingestion._read import (
    MAX_LINE_BYTES,
    LongLine,
    LongLines,
    copy_short_lines,
    csv_buffer,
    file_columns,
    line_too_long,
    mapped_columns,
    reader,
)
from steadycast.ingestion._sql import count, first_line


@dataclass(frozen=True)
class Checked:
    """The batch, now in ``checked``: how to name a row's place in the file, and what the read
    found that the quarantine needs."""

    rec: str  # SQL of a row's index in the file; ``{t}`` stands for the table alias
    has_rejects: bool  # DuckDB rejected lines (they are in ``rejects``)
    time_format: str
    long_lines: list[LongLine] = field(default_factory=list)  # each quarantined alone
    # The file's columns that are not mapped: not stored, reported once with the batch.
    ignored_columns: tuple[str, ...] = ()


def read_and_check(
    con: duckdb.DuckDBPyConnection,
    cfg: PipelineConfig,
    path: Path,
    fmt: str,
    progress: Progress | None,
    temp_dir: Path,
) -> Checked:
    """Parse, place and check every row into ``checked``, duplicates included."""
    try:
        return _read_file(con, cfg, path, fmt, progress, str(path))
    except LongLines:
        pass
    # A line too long to be a row (or a long run of blank lines) stops DuckDB's reader: read a
    # copy where each such line is one short line, so only that line is lost to the batch.
    con.execute("ROLLBACK")
    con.execute("BEGIN TRANSACTION")
    temp_dir.mkdir(parents=True, exist_ok=True)
    copy = temp_dir / f"ingest-{secrets.token_hex(8)}.csv"
    try:
        long_lines = copy_short_lines(path, fmt, copy)
        try:
            read = _read_file(con, cfg, copy, "csv", progress, str(path), comments=True)
        except LongLines:
            raise InputFileError(
                str(path),
                f"a record runs over more than {MAX_LINE_BYTES:,} bytes (a quote left open?)",
            ) from None
    finally:
        copy.unlink(missing_ok=True)
    return replace(read, long_lines=long_lines)


def _read_file(
    con: duckdb.DuckDBPyConnection,
    cfg: PipelineConfig,
    path: Path,
    fmt: str,
    progress: Progress | None,
    display: str,
    comments: bool = False,
) -> Checked:
    """Read ``path`` (the file, or the copy of it named ``display``) into ``checked``."""
    buffer = csv_buffer(con)
    peek = reader(path, fmt, cfg, keep_rejects=False, buffer=buffer, comments=comments)
    found = file_columns(con, peek, Path(display), fmt)
    columns = mapped_columns(con, peek, Path(display), fmt, cfg, found)
    src = cfg.source
    ignored = tuple(c for c in found if c not in (src.id_column, src.time_column, src.value_column))
    full = reader(path, fmt, cfg, keep_rejects=True, buffer=buffer, comments=comments)
    name = Path(display).name
    try:
        parser = choose_format(con, f"(SELECT {columns} FROM {peek})", cfg)
        parse = staged_sql(f"(SELECT {columns} FROM {full})", cfg, parser)
        with tracking(con, progress, f"reading {name}"):
            if needs_grid_map(cfg):
                con.execute(f"CREATE TEMP TABLE staged AS {parse}")
                rec = place(con, cfg)
            else:
                rec = place_direct(con, cfg, parse)
    except (duckdb.OutOfMemoryException, duckdb.InterruptException):
        raise  # the machine's memory or spill space, or a stop: not the file
    except duckdb.IOException as exc:
        if "No space left on device" in str(exc):
            raise
        raise InputFileError(display, f"cannot be read as {fmt} ({first_line(exc)})") from None
    except duckdb.Error as exc:
        if line_too_long(exc):
            raise LongLines from None
        raise InputFileError(display, f"cannot be read as {fmt} ({first_line(exc)})") from None
    has_rejects = fmt != "parquet" and bool(count(con, "SELECT count(*) FROM rejects"))
    # Each row's place in the file is fixed now; without keeping row order DuckDB groups and
    # writes in parallel.
    con.execute("SET preserve_insertion_order = false")
    with tracking(con, progress, f"checking {name}"):
        dedupe(con, rec, cfg)
    return Checked(rec, has_rejects, parser.name, ignored_columns=ignored)
