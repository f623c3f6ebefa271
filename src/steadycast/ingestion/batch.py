"""Ingest: one input file becomes one batch, stored or quarantined row by row, never lost.

The row work runs inside DuckDB over the file (vectorised SQL, spilling to disk when the file is
larger than memory); Python only sees the distinct timestamps, to place local times in UTC.
A batch is one transaction: a process killed at any moment leaves it fully in or not in at all.
Parity ``rows_read == rows_stored + rows_quarantined`` is checked before the commit.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import re
import secrets
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from pandas.tseries.offsets import Tick

from steadycast.config import PipelineConfig
from steadycast.errors import InputFileError, ParityError
from steadycast.ingestion.rawlines import row_lines
from steadycast.ingestion.timegrid import TIME_RANGE, grid_map, in_range_sql, is_calendar, offset_of
from steadycast.ops.resources import Meter
from steadycast.storage import control, store
from steadycast.workspace import Workspace

CHUNK = 1 << 20
# A line longer than this (its end included) is not a row: it is quarantined alone, as
# ``line_too_long``, and the rest of the file is read.
MAX_LINE_BYTES = 1 << 20
SHOWN_BYTES = 200  # of a line too long, what the quarantine keeps
# In the copy read when a file has lines too long: what stands for such a line (one field, so
# DuckDB rejects it on its own line) and what marks a blank line as a comment (a long run of blank
# lines counts as one long line to DuckDB's reader).
LONG_MARK = b"steadycast-line-too-long"
COMMENT = b"\x01"
DAY_US = 86_400_000_000
# Above this many bits (256 MB) for all series' time grids, the exact duplicate check is cheaper.
MAX_KEY_BITS = 1 << 31

# Reason codes, in the order they are tested: a row gets the first that applies.
REASONS = (
    "line_too_long",
    "malformed_row",
    "missing_id",
    "unparseable_time",
    "time_out_of_range",
    "nonexistent_local_time",
    "ambiguous_local_time",
    "misaligned",
    "missing_value",
    "not_a_number",
    "non_finite",
    "below_min",
    "above_max",
    "conflicting_duplicate",
    "duplicate",
)

# Formats tried, on a sample, when [source].time_format is empty and ISO 8601 does not fit.
CANDIDATE_FORMATS = (
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%Y%m%d%H%M%S",
    "%Y%m%d",
)

# Exact ISO 8601 wall-clock layouts: a sample picks the strict parser most rows fit.
ISO_STRICT = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f",
)

# A time of day followed by a UTC offset: the timestamp is an instant, not a wall-clock time.
AWARE = r"\d:\d\d(:\d\d([.,]\d+)?)?\s*([Zz]|[+-]\d\d(:?\d\d)?)\s*$"
EPOCH = r"^\s*-?\d{9,14}([.]\d+)?\s*$"


@dataclass
class BatchResult:
    """What happened to one input file; the ``--json`` shape of ``steadycast ingest``."""

    file: str
    batch_id: str
    status: str  # "ingested" | "skipped"
    rows_read: int = 0
    rows_stored: int = 0
    rows_quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    rows_new: int = 0
    rows_corrected: int = 0
    rows_unchanged: int = 0
    time_format: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0

    def contract(self) -> dict[str, Any]:
        """The fields of the command-line contract, in its order."""
        keys = (
            "file",
            "batch_id",
            "status",
            "rows_read",
            "rows_stored",
            "rows_quarantined",
            "quarantine_reasons",
        )
        full = asdict(self)
        return {k: full[k] for k in keys}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Fingerprint:
    sha256: str
    format: str  # "csv" | "csv.gz" | "parquet"


def file_format(path: Path) -> str:
    """The file's format from its first bytes; a file that cannot be opened is named."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except FileNotFoundError:
        raise InputFileError(str(path), "no such file") from None
    except IsADirectoryError:
        raise InputFileError(str(path), "is a directory, not a file") from None
    except OSError as exc:
        raise InputFileError(str(path), f"cannot be read ({exc.strerror})") from None
    if head == b"PAR1":
        return "parquet"
    return "csv.gz" if head[:2] == b"\x1f\x8b" else "csv"


def _text(handle: Any, fmt: str) -> Any:
    return gzip.GzipFile(fileobj=handle) if fmt == "csv.gz" else handle


HEAD = 1 << 16  # bytes judged before any reading: the first decompressed block of a gzip

BINARY = "expected CSV text (UTF-8), gzip-compressed CSV or Parquet"


def refuse_junk(path: Path, fmt: str) -> None:
    """Refuse a file that is not text from its first bytes, before the read and the hash start.

    A gzip of a gigabyte of zeros is refused in milliseconds instead of after decompressing it.
    """
    if fmt == "parquet":
        return
    try:
        with path.open("rb") as handle:
            head = _text(handle, fmt).read(HEAD)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputFileError(str(path), f"corrupt gzip data ({exc})") from None
    nul = head.find(b"\x00")
    if nul >= 0:
        line = head.count(b"\n", 0, nul) + 1
        raise InputFileError(str(path), f"binary data (a NUL byte on line {line}); {BINARY}")


def _line_at(path: Path, fmt: str, offset: int) -> int:
    """The 1-based line holding byte ``offset`` of the (decompressed) text; read again only
    when a file is refused, so the hashing pass does not count lines."""
    lines, done = 1, 0
    with path.open("rb") as handle:
        stream = _text(handle, fmt)
        while done < offset and (chunk := stream.read(min(CHUNK, offset - done))):
            lines += chunk.count(b"\n")
            done += len(chunk)
    return lines


class _Stopped(Exception):
    """The hash was no longer wanted (the ingest stopped)."""


def fingerprint(
    path: Path, fmt: str | None = None, stop: threading.Event | None = None
) -> _Fingerprint:
    """Hash the content and check it is readable text (UTF-8) or Parquet, in one pass.

    The hash is of the decompressed bytes, so the same rows gzipped differently are one batch.
    ``stop`` ends the pass early (an interrupted ingest does not wait for a long hash).
    """
    fmt = fmt or file_format(path)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if fmt == "parquet":
            while chunk := handle.read(CHUNK):
                if stop is not None and stop.is_set():
                    raise _Stopped
                digest.update(chunk)
            return _Fingerprint(digest.hexdigest(), fmt)
        stream = _text(handle, fmt)
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        try:
            while chunk := stream.read(CHUNK):
                if stop is not None and stop.is_set():
                    raise _Stopped
                digest.update(chunk)
                nul = chunk.find(b"\x00")
                if nul >= 0:
                    raise InputFileError(
                        str(path),
                        f"binary data (a NUL byte on line {_line_at(path, fmt, offset + nul)}); "
                        + BINARY,
                    )
                try:
                    # Plain ASCII (most files) is UTF-8 already: skip the slower decode,
                    # unless a character cut at the previous chunk's end is still pending.
                    if not chunk.isascii() or decoder.getstate()[0]:
                        decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    bad = offset + exc.start
                    raise InputFileError(
                        str(path),
                        f"not UTF-8 text (invalid byte at offset {bad}, "
                        f"line {_line_at(path, fmt, bad)}); re-save the file as UTF-8",
                    ) from None
                offset += len(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InputFileError(
                str(path), "not UTF-8 text (the file ends inside a character)"
            ) from None
        except (OSError, EOFError, zlib.error) as exc:
            raise InputFileError(str(path), f"corrupt gzip data ({exc})") from None
    if offset == 0:
        raise InputFileError(str(path), "the file is empty (not even a header row)")
    return _Fingerprint(digest.hexdigest(), fmt)


def _ident(name: str) -> str:
    """Quote a column name that was checked to exist in the file."""
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _reader(
    path: Path,
    fmt: str,
    cfg: PipelineConfig,
    keep_rejects: bool,
    buffer: int | None = None,
    comments: bool = False,
) -> str:
    """The DuckDB table function that reads the file, every column as text.

    Only the one full scan keeps its rejected lines, so each is counted once. ``comments``: the
    file is a copy whose blank lines were marked as comments (see ``_copy_short_lines``).
    """
    if fmt == "parquet":
        return f"read_parquet({_literal(str(path))})"
    options = [
        "all_varchar = true",
        "header = true",
        "compression = " + ("'gzip'" if fmt == "csv.gz" else "'none'"),
        f"max_line_size = {MAX_LINE_BYTES + 2}",
    ]
    if comments:
        options.append("comment = chr(1)")
    if keep_rejects:
        options += [
            "store_rejects = true",
            "rejects_table = 'rejects'",
            "rejects_scan = 'rejects_scan'",
        ]
    else:
        options.append("ignore_errors = true")
    if cfg.ingest.delimiter:
        options.append(f"delim = {_literal(cfg.ingest.delimiter)}")
    if buffer is not None:
        options.append(f"buffer_size = {buffer}")
    return f"read_csv({_literal(str(path))}, {', '.join(options)})"


_UNITS = {"bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_CSV_BUFFER = 32 << 20  # DuckDB's own read buffer for CSV


def _csv_buffer(con: duckdb.DuckDBPyConnection) -> int | None:
    """A CSV read buffer that fits a small ``[ingest] memory_limit`` (None: DuckDB's own).

    DuckDB reads CSV in 32 MiB buffers, which a cap of tens of megabytes cannot hold; an eighth
    of the cap (at least 4 MiB, above the longest line DuckDB accepts by default) streams.
    """
    row = con.execute("SELECT current_setting('memory_limit')").fetchone()
    found = re.fullmatch(r"([\d.]+)\s*(bytes|KiB|MiB|GiB|TiB)", str(row[0] if row else "").strip())
    if not found:
        return None
    buffer = max(4 << 20, int(float(found[1]) * _UNITS[found[2]]) // 8)
    return buffer if buffer < _CSV_BUFFER else None


def _mapped_columns(
    con: duckdb.DuckDBPyConnection, reader: str, path: Path, fmt: str, cfg: PipelineConfig
) -> str:
    """SELECT list of the three mapped columns, as text; names are checked against the file."""
    src = cfg.source
    wanted = [src.id_column, src.time_column, src.value_column]
    try:
        columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
    except duckdb.Error as exc:
        if _line_too_long(exc):
            raise _LongLines from None
        raise InputFileError(str(path), f"cannot be read as {fmt} ({_first_line(exc)})") from None
    missing = [c for c in wanted if c not in columns]
    if missing:
        shown = ", ".join(repr(c) for c in columns[:20])
        raise InputFileError(
            str(path),
            f"missing column(s) {', '.join(repr(c) for c in missing)} (columns found: {shown}); "
            f"map the file's columns in [source] of pipelines/{cfg.name}.toml",
        )
    return ", ".join(
        f"CAST({_ident(c)} AS VARCHAR) AS {alias}"
        for c, alias in zip(wanted, ("id_raw", "t_raw", "v_raw"), strict=True)
    )


class _LongLines(Exception):
    """DuckDB met a line longer than a row may be (or a long run of blank lines)."""


def _line_too_long(exc: Exception) -> bool:
    return "Maximum line size" in str(exc)


@dataclass(frozen=True)
class _LongLine:
    line: int
    size: int
    shown: str


def _copy_short_lines(path: Path, fmt: str, target: Path) -> list[_LongLine]:
    """Copy the file's text for DuckDB with each line too long replaced by ``LONG_MARK`` and each
    blank line marked as a comment: every line keeps its number, nothing long is held in memory.

    Returns the lines replaced (number, size, first bytes). Only a file DuckDB refused for a long
    line pays for this copy.
    """
    found: list[_LongLine] = []
    number = 0
    with path.open("rb") as handle, target.open("wb") as out:
        stream = _text(handle, fmt)
        while line := stream.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(line) <= MAX_LINE_BYTES:
                body = line.rstrip(b"\r\n")
                if not body:
                    out.write(COMMENT + line)
                    continue
                if COMMENT in body:
                    raise InputFileError(
                        str(path),
                        f"line {number} holds a control character (\\x01) in a file with "
                        "lines too long to read; remove it, or the lines too long",
                    )
                out.write(line)
                continue
            shown, size = line[:SHOWN_BYTES], len(line)
            while not line.endswith(b"\n") and (line := stream.readline(CHUNK)):
                size += len(line)
            if number == 1:
                raise InputFileError(
                    str(path),
                    f"the header line is {size:,} bytes long, more than the {MAX_LINE_BYTES:,} a "
                    "line may have; expected a header row of column names",
                )
            found.append(_LongLine(number, size, shown.decode("utf-8", "replace")))
            out.write(LONG_MARK + b"\n")
    return found


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass(frozen=True)
class _TimeParser:
    """How the time column is read: ``strict`` accepts only the whole text in one exact format
    (so it can never drop a UTC offset); rows it refuses go through ``lenient`` after the
    offset test. Both are SQL expressions over ``t``."""

    strict: str
    lenient: str
    name: str


def _strptime(fmt: str) -> str:
    return f"try_strptime(t, {_literal(fmt)})"


def _choose_format(con: duckdb.DuckDBPyConnection, source: str, cfg: PipelineConfig) -> _TimeParser:
    """Pick the time parsers from a sample of the file."""
    explicit = cfg.source.time_format
    if explicit:
        return _TimeParser(_strptime(explicit), _strptime(explicit), explicit)
    con.execute(
        f"CREATE TEMP TABLE sample AS SELECT t FROM (SELECT t_raw AS t FROM {source} LIMIT 5000) "
        f"WHERE t IS NOT NULL AND NOT regexp_matches(t, {_literal(AWARE)}) "
        f"AND NOT regexp_matches(t, {_literal(EPOCH)})"
    )

    def fitting(expr: str) -> int:
        return _count(con, f"SELECT count({expr}) FROM sample")

    total = _count(con, "SELECT count(*) FROM sample")
    strict_count, strict = max((fitting(_strptime(f)), _strptime(f)) for f in ISO_STRICT)
    best = _TimeParser(
        strict if strict_count else "NULL::TIMESTAMP", "TRY_CAST(t AS TIMESTAMP)", "ISO 8601"
    )
    best_count = fitting(best.lenient)
    if best_count < total:
        for fmt in CANDIDATE_FORMATS:
            count = fitting(_strptime(fmt))
            if count > best_count:
                best, best_count = _TimeParser(_strptime(fmt), _strptime(fmt), fmt), count
    con.execute("DROP TABLE sample")
    return best


def _staged_sql(source: str, cfg: PipelineConfig, parser: _TimeParser) -> str:
    """SELECT that parses every row: id, value, wall-clock or UTC time, unparsed text.

    Most rows are read by the strict parser and tested for nothing else. Of the rest, a cheap
    string test finds the few that may carry a UTC offset; only those pay for the regular
    expression, and only rows that are not wall-clock times are tried as epoch numbers.
    """
    strict = parser.strict
    if re.search(r"%[zZ]", cfg.source.time_format):
        strict = naive = "NULL::TIMESTAMP"
        aware = f"timezone('UTC', try_strptime(t, {_literal(cfg.source.time_format)}))"
        maybe_aware = "true"
    else:
        naive = parser.lenient
        aware = "timezone('UTC', TRY_CAST(t AS TIMESTAMPTZ))"
        # CASE evaluates lazily, so only rows that pass the cheap test pay for the regex.
        maybe_aware = (
            "CASE WHEN suffix(t, 'Z') OR suffix(t, 'z') OR contains(substr(t, 12), '+') "
            f"OR contains(substr(t, 14), '-') THEN regexp_matches(t, {_literal(AWARE)}) END"
        )
    epoch = (
        f"CASE WHEN regexp_matches(t, {_literal(EPOCH)}) THEN "
        "CASE WHEN length(split_part(ltrim(trim(t), '-'), '.', 1)) <= 11 "
        "THEN timezone('UTC', to_timestamp(TRY_CAST(t AS DOUBLE))) "
        "ELSE timezone('UTC', to_timestamp(TRY_CAST(t AS DOUBLE) / 1000.0)) END END"
    )
    # The original text is kept only where it did not parse; good rows keep typed values only.
    return f"""
        SELECT unique_id, y, ts_local, ts_utc,
               CASE WHEN ts_local IS NULL AND ts_utc IS NULL THEN t END AS t_raw,
               CASE WHEN y IS NULL THEN v_raw END AS v_raw
        FROM (
        SELECT unique_id, t, v_raw, y, ts_local,
               CASE WHEN is_aware THEN {aware} WHEN ts_local IS NULL THEN {epoch} END AS ts_utc
        FROM (
            SELECT unique_id, t, v_raw, y, is_aware,
                   CASE WHEN strict IS NOT NULL THEN strict WHEN NOT is_aware THEN {naive} END
                     AS ts_local
            FROM (
            SELECT unique_id, t, v_raw, y, strict,
                   CASE WHEN strict IS NULL THEN coalesce({maybe_aware}, false) ELSE false END
                     AS is_aware
            FROM (
                SELECT NULLIF(trim(id_raw), '') AS unique_id, t_raw AS t, v_raw,
                       TRY_CAST(v_raw AS DOUBLE) AS y, {strict} AS strict
                FROM {source}
            )
            )
        )
        )
    """


def _needs_grid_map(cfg: PipelineConfig) -> bool:
    """Whether placing times needs the zone's rules (a map of distinct local times).

    Not for a UTC pipeline or a calendar frequency on a fixed grid: there the time is placed by
    arithmetic in the same pass that parses it, so the file is read and written once.
    """
    if not isinstance(offset_of(cfg.series.frequency), Tick):
        return True
    return not (cfg.source.timezone in ("UTC", "Etc/UTC") or is_calendar(cfg.series.frequency))


def _place(con: duckdb.DuckDBPyConnection, cfg: PipelineConfig) -> str:
    """Place parsed rows through the zone's grid map (DST rules); returns the row-number
    expression of ``checked``."""
    tz = _literal(cfg.source.timezone)
    local = f"coalesce(ts_local, timezone({tz}, timezone('UTC', ts_utc)))"
    # Times out of range never reach pandas (they are quarantined, and pandas cannot hold them).
    locals_ = con.execute(
        f"SELECT DISTINCT {local} AS local FROM staged "
        f"WHERE {in_range_sql('coalesce(ts_local, ts_utc)')}"
    ).fetchdf()["local"]
    gm = grid_map(locals_, cfg.series.frequency, cfg.source.timezone, cfg.ingest.snap_to_frequency)
    con.register("grid_df", gm)
    con.execute("CREATE TEMP TABLE grid AS SELECT * FROM grid_df")
    con.unregister("grid_df")
    calendar = is_calendar(cfg.series.frequency)
    snap = cfg.ingest.snap_to_frequency
    aware_ds = (
        "g.local_snapped"
        if calendar
        else ("s.ts_utc - (g.ts_local - g.local_snapped)" if snap else "s.ts_utc")
    )
    base = _count(con, "SELECT min(rowid) FROM staged")
    con.execute(f"""
        CREATE TEMP TABLE ambiguous AS
        SELECT s.rowid - {base} AS rec,
               row_number() OVER (PARTITION BY s.unique_id, s.ts_local ORDER BY s.rowid) AS rn,
               count(*) OVER (PARTITION BY s.unique_id, s.ts_local) AS cnt
        FROM staged s JOIN grid g ON g.ts_local = s.ts_local
        WHERE g.ds_first <> g.ds_second
    """)
    rows = f"""staged s
            LEFT JOIN grid g ON g.ts_local = coalesce(s.ts_local, timezone({tz}, timezone('UTC', s.ts_utc)))
            LEFT JOIN ambiguous a ON a.rec = s.rowid - {base}"""
    ds = f"""CASE
                     WHEN s.ts_local IS NULL THEN {aware_ds}
                     WHEN a.rec IS NULL THEN g.ds_first
                     WHEN a.rn = 1 THEN g.ds_first
                     ELSE g.ds_second
                   END"""
    dst = f"""WHEN s.ts_local IS NOT NULL AND g.ds_first IS NULL THEN {_code("nonexistent_local_time")}
                     WHEN a.rec IS NOT NULL AND (a.cnt <> 2) THEN {_code("ambiguous_local_time")}"""
    _create_checked(
        con,
        cfg,
        rows=rows,
        rec=f"s.rowid - {base} AS rec,",
        ds=ds,
        dst_reasons=dst,
        on_grid="g.on_grid",
        amb_cnt="a.cnt",
    )
    staged_rows = _count(con, "SELECT count(*) FROM staged")
    checked_rows = _count(con, "SELECT count(*) FROM checked")
    if staged_rows != checked_rows:
        raise ParityError(f"placing times: {staged_rows} rows parsed but {checked_rows} placed")
    # Free the parsed copy now: only ``checked`` is needed from here on.
    con.execute("DROP TABLE staged")
    return "{t}.rec"


def _place_direct(con: duckdb.DuckDBPyConnection, cfg: PipelineConfig, staged_sql: str) -> str:
    """Parse and place in one pass (UTC pipelines, calendar frequencies on a fixed grid);
    returns the row-number expression of ``checked`` (its insertion order is the file's)."""
    tz = _literal(cfg.source.timezone)
    step = int(pd.Timedelta(offset_of(cfg.series.frequency)).value // 1000)
    local = f"coalesce(s.ts_local, timezone({tz}, timezone('UTC', s.ts_utc)))"
    off = f"((epoch_us({local}) % {step} + {step}) % {step})"
    ds = f"make_timestamp(epoch_us({local}) - {off})" if cfg.ingest.snap_to_frequency else local
    _create_checked(
        con,
        cfg,
        rows=f"({staged_sql}) s",
        rec="",
        ds=ds,
        dst_reasons="",
        on_grid=f"{off} = 0",
        amb_cnt="NULL",
    )
    base = _count(con, "SELECT min(rowid) FROM checked")
    return f"({{t}}.rowid - {base})"


def _code(reason: str) -> int:
    """A reason's small code in ``checked`` (its 1-based position in REASONS)."""
    return REASONS.index(reason) + 1


def _create_checked(
    con: duckdb.DuckDBPyConnection,
    cfg: PipelineConfig,
    *,
    rows: str,
    rec: str,
    ds: str,
    dst_reasons: str,
    on_grid: str,
    amb_cnt: str,
) -> None:
    """``checked``: every row with its ``ds`` and, when bad, its reason code and what to show.

    The table holds the whole batch, so it is kept narrow: a good row is its id, time, value
    and two NULLs; only a bad row carries text (``bad``: time text, value text, sentence).
    """
    snap = cfg.ingest.snap_to_frequency
    lo = cfg.series.min_value
    hi = cfg.series.max_value
    freq = _literal(cfg.series.frequency)
    c = _code
    min_check = f"WHEN s.y < {float(lo)!r} THEN {c('below_min')}" if lo is not None else ""
    max_check = f"WHEN s.y > {float(hi)!r} THEN {c('above_max')}" if hi is not None else ""
    grid_check = "" if snap else f"WHEN NOT ({on_grid}) THEN {c('misaligned')}"
    zone = _literal(cfg.source.timezone)
    con.execute(f"""
        CREATE TEMP TABLE checked AS
        SELECT {"rec, " if rec else ""}unique_id, y, ds, CAST(code AS UTINYINT) AS code,
               CASE WHEN code IS NOT NULL THEN [t_text, coalesce(v_raw, CAST(y AS VARCHAR)),
               CASE code
                 WHEN {c("missing_id")} THEN 'the id column is empty'
                 WHEN {c("unparseable_time")} THEN 'cannot read ' || coalesce('''' || t_raw || '''', 'an empty value') || ' as a time'
                 WHEN {c("time_out_of_range")} THEN 'time ' || t_text || ' is outside the times a pipeline accepts ({TIME_RANGE})'
                 WHEN {c("nonexistent_local_time")} THEN 'local time ' || t_text || ' does not exist in ' || {zone} || ' (daylight-saving change)'
                 WHEN {c("ambiguous_local_time")} THEN 'local time ' || t_text || ' occurs twice in ' || {zone} || ' and this series reports it ' || amb_cnt || ' time(s)'
                 WHEN {c("misaligned")} THEN 'time ' || t_text || ' is not on the ' || {freq} || ' grid'
                 WHEN {c("missing_value")} THEN 'the value is empty'
                 WHEN {c("not_a_number")} THEN 'value ''' || v_raw || ''' is not a number'
                 WHEN {c("non_finite")} THEN 'value ' || CAST(y AS VARCHAR) || ' is not finite'
                 WHEN {c("below_min")} THEN 'value ' || CAST(y AS VARCHAR) || ' is below min_value {lo}'
                 WHEN {c("above_max")} THEN 'value ' || CAST(y AS VARCHAR) || ' is above max_value {hi}'
               END] END AS bad
        FROM (
        SELECT *,
               CASE WHEN code IS NOT NULL THEN coalesce(t_raw, strftime(t_parsed, '%Y-%m-%d %H:%M:%S')) END AS t_text
        FROM (
            SELECT {rec} s.unique_id, s.t_raw, s.v_raw, s.y, {amb_cnt} AS amb_cnt,
                   coalesce(s.ts_local, s.ts_utc) AS t_parsed,
                   {ds} AS ds,
                   CASE
                     WHEN s.unique_id IS NULL THEN {c("missing_id")}
                     WHEN s.ts_local IS NULL AND s.ts_utc IS NULL THEN {c("unparseable_time")}
                     WHEN NOT {in_range_sql("coalesce(s.ts_local, s.ts_utc)")} THEN {c("time_out_of_range")}
                     {dst_reasons}
                     {grid_check}
                     WHEN s.y IS NULL AND (s.v_raw IS NULL OR trim(s.v_raw) = '') THEN {c("missing_value")}
                     WHEN s.y IS NULL THEN {c("not_a_number")}
                     WHEN isnan(s.y) OR isinf(s.y) THEN {c("non_finite")}
                     {min_check}
                     {max_check}
                   END AS code
            FROM {rows}
        )
        )
    """)


def _no_repeated_keys(con: duckdb.DuckDBPyConnection, cfg: PipelineConfig) -> bool:
    """True when no good row's (unique_id, ds) repeats, shown without a hash table of every key.

    Each series' times become bits on one grid (one bit per step from the batch's first time);
    if every series sets as many bits as it has rows, no two of its rows share a time. A False
    is only "maybe": two times in one step (a DST day, a calendar month) share a bit, and the
    exact check decides.
    """
    lo, hi, series = con.execute(
        "SELECT epoch_us(min(ds)), epoch_us(max(ds)), approx_count_distinct(unique_id) "
        "FROM checked WHERE code IS NULL"
    ).fetchone() or (None, None, 0)
    if lo is None or hi is None:
        return True
    offset = offset_of(cfg.series.frequency)
    step = int(pd.Timedelta(offset).value // 1000) if isinstance(offset, Tick) else DAY_US
    slots = (int(hi) - int(lo)) // step + 1
    if slots * int(series * 1.1 + 1) > MAX_KEY_BITS:
        return False
    return not _count(
        con,
        f"""SELECT count(*) FROM (
              SELECT count(*) AS n,
                     bit_count(bitstring_agg(CAST((epoch_us(ds) - {int(lo)}) // {step} AS BIGINT),
                                             0, {slots - 1})) AS times
              FROM checked WHERE code IS NULL GROUP BY unique_id
            ) WHERE n <> times""",
    )


def _dedupe(con: duckdb.DuckDBPyConnection, rec: str, cfg: PipelineConfig) -> None:
    """Duplicates of (unique_id, ds) inside the batch: exact copies are stored once and the
    extra copies quarantined; copies that disagree cannot be told apart, so all are."""
    if _no_repeated_keys(con, cfg):
        return
    # A 64-bit hash finds the candidate keys in one pass; most batches have none, and then
    # nothing more is read. The exact keys are compared only for the candidates.
    con.execute("""
        CREATE TEMP TABLE suspects AS
        SELECT hash(unique_id, ds) AS h FROM checked WHERE code IS NULL
        GROUP BY 1 HAVING count(*) > 1
    """)
    if not _count(con, "SELECT count(*) FROM suspects"):
        return
    con.execute(f"""
        CREATE TEMP TABLE dupes AS
        SELECT unique_id, ds, min({rec.format(t="checked")}) AS first_rec,
               min(y) <> max(y) AS conflicting, count(*) AS n
        FROM checked
        WHERE code IS NULL AND hash(unique_id, ds) IN (SELECT h FROM suspects)
        GROUP BY unique_id, ds HAVING count(*) > 1
    """)
    # Only the code changes, in place (a row keeps its place in the file); the text shown for
    # a duplicate is made from ``dupes`` when it is quarantined.
    con.execute(f"""
        UPDATE checked SET
          code = CASE WHEN d.conflicting THEN {_code("conflicting_duplicate")}
                      ELSE {_code("duplicate")} END
        FROM dupes d
        WHERE checked.unique_id = d.unique_id AND checked.ds = d.ds AND checked.code IS NULL
          AND (d.conflicting OR {rec.format(t="checked")} <> d.first_rec)
    """)


def _exact_fields(
    con: duckdb.DuckDBPyConnection, cfg: PipelineConfig, path: Path, rec: str
) -> pd.DataFrame | None:
    """For Parquet (no lines): the quarantined rows' id, time and value as the file holds them,
    as text joined by commas (before any parsing or conversion to UTC)."""
    reader = f"read_parquet({_literal(str(path))}, file_row_number = true)"
    columns = _mapped_columns(con, f"read_parquet({_literal(str(path))})", path, "parquet", cfg)
    found = con.execute(f"""
        SELECT p.file_row_number AS rec, p.file_row_number + 1 AS line,
               concat_ws(',', coalesce(p.id_raw, ''), coalesce(p.t_raw, ''), coalesce(p.v_raw, ''))
                 AS raw
        FROM (SELECT file_row_number, {columns} FROM {reader}) p
        WHERE p.file_row_number IN (SELECT {rec} FROM checked c WHERE c.code IS NOT NULL)
    """).fetchdf()
    return found if len(found) else None


def _read_exact_lines(
    con: duckdb.DuckDBPyConnection, path: Path, fp: _Fingerprint, rec: str, has_rejects: bool
) -> Future[pd.DataFrame | None] | None:
    """Start reading the line number and exact text of the quarantined rows of ``checked``
    (``rec``: row index) back from the file, in a thread; None when no row is quarantined."""
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
    reading = pool.submit(_exact_lines, path, fp.format, rejected, recs, int(rows))
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


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> int:
    row = con.execute(sql, params or []).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _write(
    con: duckdb.DuckDBPyConnection,
    cfg: PipelineConfig,
    batch_id: str,
    file: str,
    fp: _Fingerprint,
    has_rejects: bool,
    result: BatchResult,
    rec: str,
    long_lines: list[_LongLine],
) -> None:
    """Quarantine the bad rows, apply the good ones (new, corrected, unchanged), record parity.

    ``rec`` is the expression of a row's index in the file (``{t}`` stands for the table alias).
    """
    r = rec.format(t="c")
    pipeline = cfg.name
    header = 0 if fp.format == "parquet" else 1
    if has_rejects:
        # Line numbers of rows after a rejected line shift by the rejected lines before them.
        con.execute("""
            CREATE TEMP TABLE rej AS
            SELECT line, line - 2 - (row_number() OVER (ORDER BY line) - 1) AS threshold,
                   error_message, csv_line
            -- DuckDB may report several errors for one line; the line is one quarantined row.
            -- Its text starts with the blank lines before it: the line is what follows them.
            FROM (SELECT line, min(error_message) AS error_message,
                         ltrim(any_value(csv_line), chr(13) || chr(10)) AS csv_line
                  FROM rejects GROUP BY line)
        """)
        line = f"{r} + 1 + {header} + (SELECT count(*) FROM rej WHERE rej.threshold <= {r})"
    else:
        line = f"{r} + 1 + {header}"
    names = "[" + ", ".join(_literal(r) for r in REASONS) + "]"
    dupes, t_text, v_text, detail = "", "c.bad[1]", "c.bad[2]", "c.bad[3]"
    if _count(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'dupes'"):
        # A duplicate is shown by its key; the sentence says what kind of copy it is.
        dupes = "LEFT JOIN dupes d ON d.unique_id = c.unique_id AND d.ds = c.ds"
        t_text = "coalesce(c.bad[1], strftime(c.ds, '%Y-%m-%d %H:%M:%S'))"
        v_text = "coalesce(c.bad[2], CAST(c.y AS VARCHAR))"
        detail = f"""coalesce(c.bad[3], CASE c.code
            WHEN {_code("conflicting_duplicate")} THEN d.n || ' rows for series ''' || d.unique_id
                 || ''' at ' || strftime(d.ds, '%Y-%m-%dT%H:%M:%S') || ' with different values'
            WHEN {_code("duplicate")} THEN 'exact copy of an earlier row for the same series and time'
            END)"""
    raw = (
        f"concat_ws(',', coalesce(c.unique_id, ''), coalesce({t_text}, ''), coalesce({v_text}, ''))"
    )
    # The exact text of the quarantined lines is read back from the file in a thread while the
    # good rows are written (DuckDB works in its own threads meanwhile).
    reading = (
        None if fp.format == "parquet" else _read_exact_lines(con, Path(file), fp, r, has_rejects)
    )
    if has_rejects:
        reason, detail_text, raw_text, long_join = (
            "'malformed_row'",
            "error_message",
            "csv_line",
            "",
        )
        if long_lines:
            # A line too long was read as a short stand-in; it is quarantined as what it was.
            shown = pd.DataFrame(
                {
                    "line": [x.line for x in long_lines],
                    "detail": [
                        f"the line is {x.size:,} bytes long, more than the {MAX_LINE_BYTES:,} a "
                        f"line may have; raw holds its first {SHOWN_BYTES} bytes"
                        for x in long_lines
                    ],
                    "raw": [x.shown for x in long_lines],
                }
            )
            con.register("long_lines_df", shown)
            long_join = "LEFT JOIN long_lines_df l USING (line)"
            reason = "CASE WHEN l.line IS NULL THEN 'malformed_row' ELSE 'line_too_long' END"
            detail_text, raw_text = "coalesce(l.detail, error_message)", "coalesce(l.raw, csv_line)"
        con.execute(
            f"INSERT INTO quarantine SELECT ?, ?, ?, line, {reason}, {detail_text}, NULL, "
            f"{raw_text} FROM rej {long_join}",
            [pipeline, batch_id, file],
        )
    batch_no = _count(con, "SELECT coalesce(max(batch_no), 0) + 1 FROM batches")
    # Values already stored for the same keys: corrections move the old value to history.
    first_batch = not _count(con, "SELECT count(*) FROM batches WHERE pipeline = ?", [pipeline])
    con.execute(
        "CREATE TEMP TABLE existing AS "
        "SELECT o.unique_id, o.ds, o.y AS old_y, o.batch_no AS old_batch, c.y AS new_y "
        "FROM observations o JOIN checked c ON o.unique_id = c.unique_id AND o.ds = c.ds "
        f"WHERE o.pipeline = ? AND c.code IS NULL {'AND false' if first_batch else ''}",
        [pipeline],
    )
    corrected = _count(con, "SELECT count(*) FROM existing WHERE old_y <> new_y")
    unchanged = _count(con, "SELECT count(*) FROM existing WHERE old_y = new_y")
    if corrected:
        con.execute(
            "INSERT INTO observation_history SELECT ?, e.unique_id, e.ds, e.old_y, b.batch_id, ?, "
            "now()::TIMESTAMP FROM existing e "
            "JOIN batches b ON b.pipeline = ? AND b.batch_no = e.old_batch "
            "WHERE e.old_y <> e.new_y",
            [pipeline, batch_id, pipeline],
        )
        con.execute(
            "DELETE FROM observations o USING existing e WHERE o.pipeline = ? "
            "AND o.unique_id = e.unique_id AND o.ds = e.ds AND e.old_y <> e.new_y",
            [pipeline],
        )
    skip_unchanged = (
        "AND NOT EXISTS (SELECT 1 FROM existing e WHERE e.unique_id = c.unique_id "
        "AND e.ds = c.ds AND e.old_y = e.new_y)"
        if unchanged
        else ""
    )
    con.execute(
        "INSERT INTO observations SELECT ?, c.unique_id, c.ds, c.y, ? FROM checked c "
        f"WHERE c.code IS NULL {skip_unchanged}",
        [pipeline, batch_no],
    )

    if reading is None:
        found = _exact_fields(con, cfg, Path(file), r) if fp.format == "parquet" else None
    else:
        found = reading.result()
    exact = ""
    if found is not None:
        # The line as it is in the file, so a person grepping for it finds it.
        con.register("exact_lines_df", found)
        exact = f"LEFT JOIN exact_lines_df x ON x.rec = {r}"
        line, raw = f"coalesce(x.line, {line})", f"coalesce(x.raw, {raw})"
    con.execute(
        f"INSERT INTO quarantine SELECT ?, ?, ?, {line}, {names}[c.code], {detail}, c.unique_id, "
        f"{raw} FROM checked c {dupes} {exact} WHERE c.code IS NOT NULL",
        [pipeline, batch_id, file],
    )
    rejected = _count(con, "SELECT count(*) FROM rej") if has_rejects else 0
    result.rows_read = _count(con, "SELECT count(*) FROM checked") + rejected
    result.rows_stored = _count(con, "SELECT count(*) FROM checked WHERE code IS NULL")
    reasons = con.execute(
        "SELECT reason, count(*) FROM quarantine WHERE pipeline = ? AND batch_id = ? "
        "GROUP BY reason ORDER BY reason",
        [pipeline, batch_id],
    ).fetchall()
    result.quarantine_reasons = {str(k): int(v) for k, v in reasons}
    result.rows_quarantined = sum(result.quarantine_reasons.values())
    result.rows_corrected = corrected
    result.rows_unchanged = unchanged
    result.rows_new = result.rows_stored - corrected - unchanged
    if result.rows_read != result.rows_stored + result.rows_quarantined:
        raise ParityError(
            f"{file}: parity broken: read {result.rows_read} rows but stored "
            f"{result.rows_stored} and quarantined {result.rows_quarantined}; nothing was committed"
        )
    con.execute(
        "INSERT INTO batches VALUES (?, ?, ?, ?, ?, now()::TIMESTAMP, ?, ?, ?, ?, ?, ?, ?)",
        [
            pipeline,
            batch_id,
            fp.sha256,
            file,
            fp.format,
            result.rows_read,
            result.rows_stored,
            result.rows_quarantined,
            result.rows_new,
            corrected,
            unchanged,
            batch_no,
        ],
    )


Progress = Callable[[str, int, int], None]  # (label, done, total)


@contextmanager
def _tracking(
    con: duckdb.DuckDBPyConnection, progress: Progress | None, label: str
) -> Iterator[None]:
    """Report the progress of the statement running on ``con`` (a big file takes a while)."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.25):
            try:
                percent = con.query_progress()
            except duckdb.Error:
                return
            if percent >= 0:
                progress(label, int(percent), 100)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        progress(label, 100, 100)


def ingest_file(
    ws: Workspace, cfg: PipelineConfig, path: Path, progress: Progress | None = None
) -> BatchResult:
    """Ingest one file as one batch; a batch already ingested into this pipeline is skipped.

    The file is hashed in a thread while DuckDB reads it: the hash names the batch and is only
    needed to write it. A file the hash refuses (not text, not UTF-8) or has seen before stops
    the read at once.
    """
    meter = Meter()
    with meter:
        fmt = file_format(path)
        refuse_junk(path, fmt)
        with store.writing(
            ws.store_path, memory_limit=cfg.ingest.memory_limit, temp_dir=ws.temp_dir
        ) as con:
            known = {
                str(row[0])
                for row in con.execute(
                    "SELECT content_sha256 FROM batches WHERE pipeline = ?", [cfg.name]
                ).fetchall()
            }
            con.execute("BEGIN TRANSACTION")
            stop = threading.Event()
            with ThreadPoolExecutor(1, thread_name_prefix="steadycast-hash") as pool:
                hashing = pool.submit(_hash_watching, path, fmt, known, con, stop)
                try:
                    result = _ingest_batch(
                        con, cfg, path, fmt, hashing, known, progress, ws.temp_dir
                    )
                except BaseException:
                    stop.set()
                    with contextlib.suppress(duckdb.Error):
                        con.execute("ROLLBACK")
                    raise
    usage = meter.usage
    result.wall_s, result.cpu_s, result.peak_rss_mb = usage.wall_s, usage.cpu_s, usage.peak_rss_mb
    control.audit(
        ws.control_path,
        f"ingest.{result.status}",
        pipeline=cfg.name,
        subject=result.batch_id,
        detail={
            "file": result.file,
            "rows_read": result.rows_read,
            "rows_stored": result.rows_stored,
            "rows_quarantined": result.rows_quarantined,
            "quarantine_reasons": result.quarantine_reasons,
        },
    )
    return result


def _hash_watching(
    path: Path,
    fmt: str,
    known: set[str],
    con: duckdb.DuckDBPyConnection,
    stop: threading.Event,
) -> _Fingerprint:
    """Fingerprint the file; interrupt the read on ``con`` as soon as the file is refused or
    known to be a batch already ingested (either way the read would be wasted)."""
    try:
        fp = fingerprint(path, fmt, stop)
    except _Stopped:
        raise
    except BaseException:
        con.interrupt()
        raise
    if fp.sha256 in known:
        con.interrupt()
    return fp


def _ingest_batch(
    con: duckdb.DuckDBPyConnection,
    cfg: PipelineConfig,
    path: Path,
    fmt: str,
    hashing: Future[_Fingerprint],
    known: set[str],
    progress: Progress | None,
    temp_dir: Path,
) -> BatchResult:
    """Read, check and write the batch inside the caller's transaction (committed here)."""
    display = str(path)
    try:
        rec, has_rejects, time_format, long_lines = _read_and_check(
            con, cfg, path, fmt, progress, temp_dir
        )
    except Exception:  # not a Ctrl-C: that stops the hash and leaves at once
        fp = hashing.result()  # the hash's verdict on the file comes first
        if fp.sha256 in known:
            con.execute("ROLLBACK")
            return BatchResult(file=display, batch_id=fp.sha256[:16], status="skipped")
        raise
    fp = hashing.result()
    result = BatchResult(file=display, batch_id=fp.sha256[:16], status="ingested")
    if fp.sha256 in known:
        con.execute("ROLLBACK")
        result.status = "skipped"
        return result
    result.time_format = time_format
    with _tracking(con, progress, f"storing {path.name}"):
        _write(con, cfg, result.batch_id, display, fp, has_rejects, result, rec, long_lines)
    con.execute("COMMIT")
    return result


def _read_and_check(
    con: duckdb.DuckDBPyConnection,
    cfg: PipelineConfig,
    path: Path,
    fmt: str,
    progress: Progress | None,
    temp_dir: Path,
) -> tuple[str, bool, str, list[_LongLine]]:
    """Parse, place and check every row into ``checked``, duplicates included.

    Returns the row-number expression of ``checked``, whether DuckDB rejected lines, the time
    format used and the lines too long to be rows (each is quarantined alone).
    """
    try:
        return (*_read_file(con, cfg, path, fmt, progress, str(path)), [])
    except _LongLines:
        pass
    # A line too long to be a row (or a long run of blank lines) stops DuckDB's reader: read a
    # copy where each such line is one short line, so only that line is lost to the batch.
    con.execute("ROLLBACK")
    con.execute("BEGIN TRANSACTION")
    temp_dir.mkdir(parents=True, exist_ok=True)
    copy = temp_dir / f"ingest-{secrets.token_hex(8)}.csv"
    try:
        long_lines = _copy_short_lines(path, fmt, copy)
        try:
            read = _read_file(con, cfg, copy, "csv", progress, str(path), comments=True)
        except _LongLines:
            raise InputFileError(
                str(path),
                f"a record runs over more than {MAX_LINE_BYTES:,} bytes (a quote left open?)",
            ) from None
    finally:
        copy.unlink(missing_ok=True)
    return (*read, long_lines)


def _read_file(
    con: duckdb.DuckDBPyConnection,
    cfg: PipelineConfig,
    path: Path,
    fmt: str,
    progress: Progress | None,
    display: str,
    comments: bool = False,
) -> tuple[str, bool, str]:
    """Read ``path`` (the file, or the copy of it named ``display``) into ``checked``."""
    buffer = _csv_buffer(con)
    peek = _reader(path, fmt, cfg, keep_rejects=False, buffer=buffer, comments=comments)
    columns = _mapped_columns(con, peek, Path(display), fmt, cfg)
    full = _reader(path, fmt, cfg, keep_rejects=True, buffer=buffer, comments=comments)
    name = Path(display).name
    try:
        parser = _choose_format(con, f"(SELECT {columns} FROM {peek})", cfg)
        parse = _staged_sql(f"(SELECT {columns} FROM {full})", cfg, parser)
        with _tracking(con, progress, f"reading {name}"):
            if _needs_grid_map(cfg):
                con.execute(f"CREATE TEMP TABLE staged AS {parse}")
                rec = _place(con, cfg)
            else:
                rec = _place_direct(con, cfg, parse)
    except (duckdb.OutOfMemoryException, duckdb.InterruptException):
        raise  # the machine's memory or spill space, or a stop: not the file
    except duckdb.IOException as exc:
        if "No space left on device" in str(exc):
            raise
        raise InputFileError(display, f"cannot be read as {fmt} ({_first_line(exc)})") from None
    except duckdb.Error as exc:
        if _line_too_long(exc):
            raise _LongLines from None
        raise InputFileError(display, f"cannot be read as {fmt} ({_first_line(exc)})") from None
    has_rejects = fmt != "parquet" and bool(_count(con, "SELECT count(*) FROM rejects"))
    # Each row's place in the file is fixed now; without keeping row order DuckDB groups and
    # writes in parallel.
    con.execute("SET preserve_insertion_order = false")
    with _tracking(con, progress, f"checking {name}"):
        _dedupe(con, rec, cfg)
    return rec, has_rejects, parser.name


def ingest(ws: Workspace, pipeline: str, files: list[Path]) -> list[BatchResult]:
    """Ingest files in order; each is its own batch, so a failure leaves earlier ones stored."""
    cfg = ws.pipeline(pipeline)
    return [ingest_file(ws, cfg, Path(f)) for f in files]


def quarantined(ws: Workspace, pipeline: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Quarantined rows of a pipeline with their reasons, newest batch first."""
    ws.pipeline(pipeline)
    sql = """
        SELECT q.batch_id, q.file, q.line, q.reason, q.detail, q.unique_id, q.raw
        FROM quarantine q LEFT JOIN batches b USING (pipeline, batch_id)
        WHERE q.pipeline = ? ORDER BY b.ingested_at DESC, q.file, q.line
    """
    params: list[Any] = [pipeline]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    with store.reading(ws.store_path) as con:
        cursor = con.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
