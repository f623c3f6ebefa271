"""The exact text and line number of chosen rows of a CSV file, for the quarantine.

DuckDB hands ingest typed fields, not lines; a person looking for a quarantined row greps the file
for the text it had (``NaN``, ``1``, ``12:00:00+01:00``), so that text is read back from the file
for the quarantined rows only. One pass over the (decompressed) bytes, vectorised per block:
a row is a line that is not blank, not the header and not a line DuckDB rejected (those carry
their own text). Only blocks that hold a wanted row are split into lines.
"""

from __future__ import annotations

import bisect
import gzip
from pathlib import Path
from typing import BinaryIO

import numpy as np

BLOCK = 1 << 20
NEWLINE, RETURN = 10, 13


def _stream(handle: BinaryIO, fmt: str) -> BinaryIO:
    return gzip.GzipFile(fileobj=handle) if fmt == "csv.gz" else handle  # type: ignore[return-value]


def row_lines(
    path: Path, fmt: str, rejected: list[int], wanted: list[int], rows: int, keep: int = 1 << 16
) -> dict[int, tuple[int, str]] | None:
    """Row index (0-based, in file order, rejected lines not counted) to (line, exact text).

    ``rejected`` are the line numbers DuckDB rejected; ``rows`` is how many rows DuckDB read.
    The first pass takes every line for a row (a newline count per block); when the count does
    not come out at ``rows`` (blank lines), a second pass tells blank lines apart. Returns None
    when lines are still not rows one to one (a quoted field that runs over several lines), where
    a line number cannot name a row. ``keep`` caps the text kept per row.
    """
    skip = sorted(set(rejected))
    want = sorted(set(wanted))
    for careful in (False, True):
        counted, found = _scan(path, fmt, skip, want, keep, careful)
        if counted == rows:
            return found
    return None


def _scan(
    path: Path, fmt: str, skip: list[int], want: list[int], keep: int, careful: bool
) -> tuple[int, dict[int, tuple[int, str]]]:
    """One pass: the rows counted and the wanted rows found (see ``row_lines``)."""
    found: dict[int, tuple[int, str]] = {}
    lines_before = 0  # complete lines before the current block
    rows_before = 0  # rows among them
    carry = b""  # the unfinished last line of the previous block (cut: only its start matters)
    with path.open("rb") as handle:
        stream = _stream(handle, fmt)
        while True:
            chunk = stream.read(BLOCK)
            last = not chunk
            block = carry + chunk if not last else (carry + b"\n" if carry else b"")
            if not block:
                break
            count = _newlines(block)
            if count == 0:
                carry = block[: keep + 2]
                continue
            end = block.rindex(b"\n") + 1
            header = 1 if lines_before == 0 else 0
            skipped = bisect.bisect_right(skip, lines_before + count) - bisect.bisect_left(
                skip, lines_before + 1
            )
            if careful or skipped:
                rows_before = _split(
                    block[:end], lines_before, rows_before, skip, want, found, keep
                )
            else:
                block_rows = count - header
                lo = bisect.bisect_left(want, rows_before)
                hi = bisect.bisect_left(want, rows_before + block_rows)
                if lo < hi:  # every line a row: find each wanted line by counting newlines
                    _pick(block, lines_before, header - rows_before, want[lo:hi], found, keep)
                rows_before += block_rows
            lines_before += count
            carry = block[end : end + keep + 2]
            if last:
                break
    return rows_before, found


def _pick(
    block: bytes,
    lines_before: int,
    shift: int,
    targets: list[int],
    found: dict[int, tuple[int, str]],
    keep: int,
) -> None:
    """Note the text of rows ``targets`` of a block whose lines are all rows (row ``t`` is the
    block's line ``t + shift``, 0-based)."""
    data = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(data == NEWLINE)
    index = np.asarray(targets, dtype=np.int64) + shift
    starts = np.where(index > 0, ends[np.maximum(index - 1, 0)] + 1, 0)
    stops = ends[index]
    stops -= (stops > starts) & (data[np.maximum(stops - 1, 0)] == RETURN)
    stops = np.minimum(stops, starts + keep)
    numbers = lines_before + index + 1
    for target, start, stop, number in zip(
        targets, starts.tolist(), stops.tolist(), numbers.tolist(), strict=True
    ):
        found[target] = (number, block[start:stop].decode("utf-8", "replace"))


def _newlines(block: bytes) -> int:
    """How many newlines ``block`` holds (numpy counts several times faster than bytes.count)."""
    return int(np.count_nonzero(np.frombuffer(block, dtype=np.uint8) == NEWLINE))


def _split(
    block: bytes,
    lines_before: int,
    rows_before: int,
    skip: list[int],
    want: list[int],
    found: dict[int, tuple[int, str]],
    keep: int,
) -> int:
    """Number the lines of ``block`` (complete lines only), note the wanted rows' text; returns
    the rows counted so far."""
    data = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(data == NEWLINE)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    length = ends - starts
    cr = (length > 0) & (data[np.maximum(ends - 1, 0)] == RETURN)
    length = length - cr
    number = lines_before + 1 + np.arange(len(ends))
    is_row = (length > 0) & (number > 1)
    if skip:
        is_row &= ~np.isin(number, np.asarray(skip, dtype=np.int64))
    lo = bisect.bisect_left(want, rows_before)
    total = rows_before + int(is_row.sum())
    hi = bisect.bisect_left(want, total)
    if lo < hi:
        targets = np.asarray(want[lo:hi], dtype=np.int64)
        row_pos = np.flatnonzero(is_row)
        at = row_pos[targets - rows_before]
        for target, i in zip(targets.tolist(), at.tolist(), strict=True):
            start = int(starts[i])
            text = block[start : start + min(int(length[i]), keep)]
            found[target] = (int(number[i]), text.decode("utf-8", "replace"))
    return total
