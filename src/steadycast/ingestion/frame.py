"""A DataFrame as a batch: the same checks, quarantine, ledger and replay as a file.

A notebook or a service holds its rows in a pandas DataFrame or an Arrow table, not a file. The
frame is written to a Parquet file in the workspace's temporary folder and ingested by the one
batch transaction (batch.py), so nothing about a frame's rows is checked differently. What
differs is only how the rows are named: the batch by a hash of the frame's content (the same
frame twice is one batch), the source as ``frame`` and a quarantined row by its position in the
frame (``frame row 12`` is ``df.iloc[12]``).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from steadycast.config import PipelineConfig
from steadycast.errors import InputFileError
from steadycast.ingestion._read import Fingerprint, Origin
from steadycast.ingestion.batch import BatchResult, ingest_file
from steadycast.workspace import Workspace

FRAME = "frame"  # what names a frame where a file's path would be

_WHAT = (
    "expected a list of files, one file, a pandas DataFrame or a pyarrow Table (or any frame "
    "with an Arrow stream, such as a polars DataFrame)"
)


def is_frame(obj: object) -> bool:
    """Whether ``obj`` holds rows (a frame) rather than names of files."""
    return isinstance(obj, pd.DataFrame | pa.Table | pa.RecordBatch) or hasattr(
        obj, "__arrow_c_stream__"
    )


def paths_of(files: object) -> list[str]:
    """The files ``ingest`` was given, as text (an ``s3://`` URL is no local path: ``Path`` would
    fold its ``//``); anything else is a TypeError naming what was passed (iterating a frame
    would take its column names for files)."""
    if isinstance(files, str | os.PathLike):
        return [os.fspath(files)]
    if isinstance(files, Mapping):  # its keys are column names, not files
        raise TypeError(
            f"ingest: {_WHAT}; got a {type(files).__name__}: make it a frame first, "
            "for example pandas.DataFrame(columns)"
        )
    if isinstance(files, bytes) or not isinstance(files, Iterable):
        raise TypeError(f"ingest: {_WHAT}; got {type(files).__name__}")
    paths = list(files)
    wrong = [p for p in paths if not isinstance(p, str | os.PathLike)]
    if wrong:
        raise TypeError(
            f"ingest: {_WHAT}; got a {type(files).__name__} holding "
            f"{type(wrong[0]).__name__} {wrong[0]!r}"
        )
    return [os.fspath(p) for p in paths]


def as_table(frame: Any, cfg: PipelineConfig, name: str = FRAME) -> pa.Table:
    """The frame as an Arrow table with the pipeline's mapped columns; a missing column is named
    with the columns found, as for a file."""
    if isinstance(frame, pd.DataFrame):
        table = _from_pandas(_with_index_columns(frame, cfg), name)
    elif isinstance(frame, pa.RecordBatch):
        table = pa.Table.from_batches([frame])
    elif isinstance(frame, pa.Table):
        table = frame
    else:
        table = pa.table(frame)  # any Arrow stream: polars, DuckDB relations, ...
    src = cfg.source
    wanted = [src.id_column, src.time_column, src.value_column]
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        shown = ", ".join(repr(c) for c in table.column_names[:20])
        raise InputFileError(
            name,
            f"missing column(s) {', '.join(repr(c) for c in missing)} (columns found: {shown}); "
            f"rename the frame's columns, or map them in [source] of pipelines/{cfg.name}.toml",
        )
    return table.replace_schema_metadata(None)


def _with_index_columns(frame: pd.DataFrame, cfg: PipelineConfig) -> pd.DataFrame:
    """A mapped column kept as the frame's index (``df.set_index("ds")``) is a column again."""
    src = cfg.source
    named = {src.id_column, src.time_column, src.value_column} & {
        n for n in frame.index.names if n is not None
    }
    return frame.reset_index(level=sorted(named)) if named else frame


def _from_pandas(frame: pd.DataFrame, name: str = FRAME) -> pa.Table:
    """Arrow columns of a pandas frame; a column of mixed Python objects (numbers and text) is
    taken as text, as a file holds it, so its bad values are quarantined row by row."""
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    fixed = frame.copy()
    for name in fixed.columns:
        if fixed[name].dtype == object:
            fixed[name] = [None if _missing(v) else str(v) for v in fixed[name]]
    try:
        return pa.Table.from_pandas(fixed, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InputFileError(name, f"cannot be read as a table ({exc})") from None


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


class _Digest:
    """A file-like sink that only hashes what is written to it."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256(b"steadycast frame 1\n")
        self.closed = False

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def content_sha256(table: pa.Table) -> str:
    """A hash of the frame's columns, types and rows in order (not of how Arrow chunked them,
    nor of the pandas metadata): it names the batch, so the same frame twice is one batch."""
    digest = _Digest()
    combined = table.combine_chunks()
    with pa.ipc.new_stream(digest, combined.schema) as writer:
        writer.write_table(combined)
    return digest.sha.hexdigest()


def ingest_frame(
    ws: Workspace, cfg: PipelineConfig, frame: Any, *, name: str = FRAME, first_row: int = 0
) -> BatchResult:
    """Ingest a frame as one batch (see the module's docstring); the Parquet file it goes
    through is removed, whatever happens. ``name`` and ``first_row``: what the ledger and the
    quarantine call the rows when they came from elsewhere (a query's result, counted from 1)."""
    table = as_table(frame, cfg, name)
    fp = Fingerprint(content_sha256(table), "parquet")
    ws.temp_dir.mkdir(parents=True, exist_ok=True)
    path = ws.temp_dir / f"frame-{fp.sha256[:16]}-{secrets.token_hex(4)}.parquet"
    try:
        pq.write_table(table, path)
        return ingest_file(ws, cfg, path, origin=Origin(name, fp, first_row=first_row))
    finally:
        path.unlink(missing_ok=True)
