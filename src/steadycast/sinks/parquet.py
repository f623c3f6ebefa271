"""The Parquet sink: each release as a hive-partitioned Parquet dataset, in a local folder or
under an ``s3://bucket/prefix``.

Layout, one folder per pipeline and per release, the current one named by a marker::

    <path>/pipeline=<pipeline>/release_id=<release>/part-0.parquet
    <path>/pipeline=<pipeline>/_CURRENT      {"release_id", "run_id", "written_at", "rows"}

Releases are kept (a reader may compare them, and the store's own lifecycle rules can expire
old ones); a reader wanting the current forecast reads ``_CURRENT`` first and then that one
release folder (docs/sinks.md shows it with DuckDB and pyarrow). The data file is written
before the marker, each in one step (a single PUT on object storage, a rename in a folder), so
a reader never finds the marker pointing at a missing or half-written file. Writing the same
release again rewrites the same two objects: a retried delivery is harmless. Names starting
with ``_`` or ``.`` are skipped by Parquet dataset readers, so the marker and the temporary files
never show up as data.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from steadycast.errors import InputFileError, SinkError
from steadycast.ingestion import objectstore
from steadycast.sinks.base import ReleaseRows

if TYPE_CHECKING:
    from collections.abc import Callable

    from steadycast.config import ParquetSinkConfig

DATA_FILE = "part-0.parquet"
MARKER = "_CURRENT"
COMPRESSION = "zstd"


class ParquetSink:
    """Writes each release it is given to a Parquet dataset (see the module docstring)."""

    def __init__(self, cfg: ParquetSinkConfig) -> None:
        self.path = cfg.path.strip().rstrip("/")
        self.remote = objectstore.is_object_url(self.path)
        if self.remote:
            objectstore.parse(self.path)  # a URL with credentials is refused here, not at write

    @property
    def label(self) -> str:
        """``parquet <path>``: the URL or folder as configured (a URL never holds credentials)."""
        return f"parquet {self.path}"

    def write(self, release: ReleaseRows) -> None:
        """Write the release's rows, then the marker that makes it current."""
        marker = _marker_bytes(release)
        folder = f"pipeline={release.pipeline}"
        data_name = f"{folder}/release_id={release.release_id}/{DATA_FILE}"
        try:
            if self.remote:
                self._put_remote(data_name, _parquet_buffer(release.rows))
                self._put_remote(f"{folder}/{MARKER}", marker)
            else:
                rows = release.rows
                _put_local(
                    Path(self.path) / data_name,
                    lambda out: pq.write_table(rows, out, compression=COMPRESSION),
                )
                _put_local(Path(self.path) / folder / MARKER, lambda out: out.write(marker))
        except InputFileError as error:
            raise SinkError(self.label, error.problem) from None
        except OSError as error:
            raise SinkError(self.label, _os_problem(error, self.remote)) from None

    def _put_remote(self, name: str, body: bytes | pa.Buffer) -> None:
        """One object in one request: pyarrow uploads a small body with a single PUT and a large
        one as a multipart upload that only becomes visible when it completes."""
        target = objectstore.parse(f"{self.path}/{name}")
        s3 = objectstore.filesystem(self.path)
        stream = s3.open_output_stream(target.path, compression=None)
        try:
            stream.write(body)
        finally:
            stream.close()


def _parquet_buffer(rows: pa.Table) -> pa.Buffer:
    """The release as one Parquet file, in memory: a failure here never touches the store."""
    sink = pa.BufferOutputStream()
    pq.write_table(rows, sink, compression=COMPRESSION)
    return sink.getvalue()


def _marker_bytes(release: ReleaseRows) -> bytes:
    """The ``_CURRENT`` marker: which release readers should take, and how many rows it has."""
    body = {
        "release_id": release.release_id,
        "run_id": release.run_id,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": release.rows.num_rows,
        "file": f"release_id={release.release_id}/{DATA_FILE}",
    }
    return (json.dumps(body, indent=2) + "\n").encode("utf-8")


def _put_local(path: Path, fill: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` whole or not at all: ``fill`` writes a hidden temporary file in the same
    folder, flushed to disk, then renamed over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _os_problem(error: OSError, remote: bool) -> str:
    """What went wrong, in words that say what to check."""
    if remote:
        return objectstore.problem(error, "upload")
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename else ""
    return f"cannot write the folder{where}: {reason}; check it exists and is writable"
