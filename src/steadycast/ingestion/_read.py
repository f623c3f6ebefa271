"""Reading an input file: its format, junk refusal, the content hash, DuckDB's reader of it.

A file is judged from its first bytes (not text, not UTF-8: refused with the line), hashed in
one pass (the hash names the batch), and read by DuckDB with every column as text. A line too
long to be a row is replaced, in a copy, by a short stand-in, so only that line is lost.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import re
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from steadycast.config import PipelineConfig
from steadycast.errors import InputFileError
from steadycast.ingestion._sql import first_line, ident, literal

CHUNK = 1 << 20  # bytes read at a time when hashing or copying a file
# A line longer than this (its end included) is not a row: it is quarantined alone, as
# ``line_too_long``, and the rest of the file is read.
MAX_LINE_BYTES = 1 << 20
SHOWN_BYTES = 200  # of a line too long, what the quarantine keeps
# In the copy read when a file has lines too long: what stands for such a line (one field, so
# DuckDB rejects it on its own line) and what marks a blank line as a comment (a long run of blank
# lines counts as one long line to DuckDB's reader).
LONG_MARK = b"steadycast-line-too-long"
COMMENT = b"\x01"


@dataclass(frozen=True)
class Fingerprint:
    """A file's content hash (its first 16 hex digits name the batch) and its format."""

    sha256: str
    format: str  # "csv" | "csv.gz" | "parquet"


@dataclass(frozen=True)
class Origin:
    """Rows that did not come as a file (a DataFrame, written to a Parquet file to be read):
    what the ledger, the quarantine and the messages call them instead of the file's path, and
    their content hash, known already, which names the batch.

    A quarantined row of a frame is named by its position (``first_row`` is the first row's
    number: 0, as ``df.iloc`` counts), since the Parquet file it went through is not the user's.
    """

    name: str
    fingerprint: Fingerprint
    first_row: int = 0


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


class Stopped(Exception):
    """The hash was no longer wanted (the ingest stopped)."""


def fingerprint(
    path: Path, fmt: str | None = None, stop: threading.Event | None = None
) -> Fingerprint:
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
                    raise Stopped
                digest.update(chunk)
            return Fingerprint(digest.hexdigest(), fmt)
        stream = _text(handle, fmt)
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        try:
            while chunk := stream.read(CHUNK):
                if stop is not None and stop.is_set():
                    raise Stopped
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
    return Fingerprint(digest.hexdigest(), fmt)


def reader(
    path: Path,
    fmt: str,
    cfg: PipelineConfig,
    keep_rejects: bool,
    buffer: int | None = None,
    comments: bool = False,
) -> str:
    """The DuckDB table function that reads the file, every column as text.

    Only the one full scan keeps its rejected lines, so each is counted once. ``comments``: the
    file is a copy whose blank lines were marked as comments (see ``copy_short_lines``).
    """
    if fmt == "parquet":
        return f"read_parquet({literal(str(path))})"
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
        options.append(f"delim = {literal(cfg.ingest.delimiter)}")
    if buffer is not None:
        options.append(f"buffer_size = {buffer}")
    return f"read_csv({literal(str(path))}, {', '.join(options)})"


_UNITS = {"bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_CSV_BUFFER = 32 << 20  # DuckDB's own read buffer for CSV


def csv_buffer(con: duckdb.DuckDBPyConnection) -> int | None:
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


def file_columns(con: duckdb.DuckDBPyConnection, reader: str, path: Path, fmt: str) -> list[str]:
    """The file's column names, as DuckDB reads them."""
    try:
        return [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
    except duckdb.Error as exc:
        if line_too_long(exc):
            raise LongLines from None
        raise InputFileError(str(path), f"cannot be read as {fmt} ({first_line(exc)})") from None


def mapped_columns(
    con: duckdb.DuckDBPyConnection,
    reader: str,
    path: Path,
    fmt: str,
    cfg: PipelineConfig,
    columns: list[str] | None = None,
) -> str:
    """SELECT list of the three mapped columns, as text; names are checked against the file
    (whose ``columns`` are read here unless given)."""
    src = cfg.source
    wanted = [src.id_column, src.time_column, src.value_column]
    if columns is None:
        columns = file_columns(con, reader, path, fmt)
    missing = [c for c in wanted if c not in columns]
    if missing:
        shown = ", ".join(repr(c) for c in columns[:20])
        raise InputFileError(
            str(path),
            f"missing column(s) {', '.join(repr(c) for c in missing)} (columns found: {shown}); "
            f"map the file's columns in [source] of pipelines/{cfg.name}.toml",
        )
    return ", ".join(
        f"CAST({ident(c)} AS VARCHAR) AS {alias}"
        for c, alias in zip(wanted, ("id_raw", "t_raw", "v_raw"), strict=True)
    )


class LongLines(Exception):
    """DuckDB met a line longer than a row may be (or a long run of blank lines)."""


def line_too_long(exc: Exception) -> bool:
    return "Maximum line size" in str(exc)


@dataclass(frozen=True)
class LongLine:
    line: int
    size: int
    shown: str


def copy_short_lines(path: Path, fmt: str, target: Path) -> list[LongLine]:
    """Copy the file's text for DuckDB with each line too long replaced by ``LONG_MARK`` and each
    blank line marked as a comment: every line keeps its number, nothing long is held in memory.

    Returns the lines replaced (number, size, first bytes). Only a file DuckDB refused for a long
    line pays for this copy.
    """
    found: list[LongLine] = []
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
            found.append(LongLine(number, size, shown.decode("utf-8", "replace")))
            out.write(LONG_MARK + b"\n")
    return found
