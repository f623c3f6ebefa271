"""The in-memory copy of each pipeline's current release, which the forecast routes serve.

Serving must never wait on a pipeline run and never see half a release, and a DuckDB query per
request would cap the server at a few hundred requests per second. So each pipeline's current
release is read once into memory, with every series' rows already serialised, and kept in one
immutable ``Snapshot``. A request checks the CURRENT pointer with one ``os.stat``; only when
the pointer file changed (a new inode, size or mtime: ``make_current`` always renames a new file
over it) is the small pointer re-read, and only when it names another release is that release
loaded, in a worker thread, into a new snapshot that replaces the old one in a single reference
assignment. A request takes one snapshot reference and builds its whole response from it, so
every response comes from exactly one release. While a new release loads (in a background
thread), requests keep being served from the previous snapshot, so a publish never stalls reads.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from steadycast.errors import NotFoundError
from steadycast.storage import releases

log = logging.getLogger(__name__)

PointerKey = tuple[int, int, int, int]


def _pointer_key(st: os.stat_result) -> PointerKey:
    return (st.st_ino, st.st_dev, st.st_mtime_ns, st.st_size)


def _as_utc_seconds(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Timestamps as naive UTC seconds, so strftime prints ``2024-03-11T00:00:00Z``."""
    if column.type.tz is not None:  # type: ignore[attr-defined]
        column = pc.cast(column, pa.timestamp(column.type.unit, tz="UTC"))  # type: ignore[attr-defined]
        column = pc.local_timestamp(column)
    return pc.cast(column, pa.timestamp("s"), safe=False)


def _text_values(column: pa.ChunkedArray, encode: Any, null: str) -> pa.Array:
    """Each value of a string-like column encoded once per distinct value (ids repeat)."""
    encoded = pc.dictionary_encode(pc.cast(column, pa.string())).combine_chunks()
    words = [null if v is None else encode(v) for v in encoded.dictionary.to_pylist()]
    out = pc.take(pa.array(words, pa.string()), encoded.indices)
    return pc.fill_null(out, null)


def _number_values(column: pa.ChunkedArray, null: str) -> pa.Array:
    """Shortest round-trip text of each float (Arrow's cast); NaN, inf and null become ``null``."""
    as_float = pc.cast(column, pa.float64())
    text = pc.cast(as_float, pa.string())
    return pc.fill_null(pc.if_else(pc.is_finite(as_float), text, pa.scalar(null)), null)


def _csv_quote(value: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([value])
    return buffer.getvalue()


def _serialise(table: pa.Table, *, as_json: bool) -> list[str]:
    """One JSON object (or one CSV line without its newline) per row, built column-wise.

    Row-at-a-time ``json.dumps`` of a 10,000-series release takes over ten seconds on a busy
    2-core machine; Arrow's vectorised string kernels do it in about two.
    """
    pieces: list[Any] = []
    for i, name in enumerate(table.column_names):
        column = table[name]
        if pa.types.is_timestamp(column.type):
            text = pc.strftime(_as_utc_seconds(column), format="%Y-%m-%dT%H:%M:%SZ")
            values = _text_values(
                text, json.dumps if as_json else _csv_quote, "null" if as_json else ""
            )
        elif pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
            values = _number_values(column, "null" if as_json else "")
        else:
            values = _text_values(
                column, json.dumps if as_json else _csv_quote, "null" if as_json else ""
            )
        if as_json:
            pieces.append(("{" if i == 0 else ",") + json.dumps(name) + ":")
        elif i:
            pieces.append(",")
        pieces.append(values)
    if as_json:
        pieces.append("}")
    if not len(table):
        return []
    joined = pc.binary_join_element_wise(*pieces, "")
    return [str(v) for v in joined.to_pylist()]


def _group(ids: list[str], texts: list[str], sep: str) -> dict[str, bytes]:
    """Rows (sorted by id) grouped per id and joined once, so a request only concatenates."""
    if not ids:
        return {}
    arr = np.asarray(ids, dtype=object)
    starts = np.flatnonzero(arr[1:] != arr[:-1]) + 1
    bounds = [0, *starts.tolist(), len(ids)]
    return {ids[s]: sep.join(texts[s:e]).encode() for s, e in itertools.pairwise(bounds)}


@dataclass
class Snapshot:
    """One release in memory: per-series serialised rows, provenance and the manifest."""

    pipeline: str
    release_id: str
    manifest: dict[str, Any]
    columns: list[str]
    series: list[str]
    json_rows: dict[str, bytes]
    provenance: dict[str, dict[str, Any]]
    table: pa.Table
    _csv_rows: dict[str, bytes] | None = field(default=None, repr=False)
    _csv_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @functools.cached_property
    def json_head(self) -> bytes:
        """The start of a JSON forecast body, up to the opening of ``rows``."""
        return (
            b'{"pipeline":'
            + json.dumps(self.pipeline).encode()
            + b',"release_id":'
            + json.dumps(self.release_id).encode()
            + b',"rows":['
        )

    @property
    def rows(self) -> int:
        return int(self.table.num_rows)

    def csv_rows(self) -> dict[str, bytes]:
        """CSV lines per series, built on the first CSV request (most clients ask JSON)."""
        if self._csv_rows is None:
            with self._csv_lock:
                if self._csv_rows is None:
                    ids = self.table["unique_id"].to_pylist()
                    self._csv_rows = _group(ids, _serialise(self.table, as_json=False), "\n")
        return self._csv_rows

    def csv_header(self) -> bytes:
        return (",".join(_csv_quote(c) for c in self.columns) + "\n").encode()


def load_snapshot(release: releases.Release) -> Snapshot:
    """Read a release's forecasts (and its provenance, if written beside it) into memory."""
    table = pq.read_table(release.forecasts_path)
    table = table.sort_by([("unique_id", "ascending"), ("ds", "ascending")])
    ids = [str(v) for v in table["unique_id"].to_pylist()]
    json_rows = _group(ids, _serialise(table, as_json=True), ",")
    provenance: dict[str, dict[str, Any]] = {}
    prov_path = release.path / "provenance.parquet"
    if prov_path.exists():
        for row in pq.read_table(prov_path).to_pylist():
            clean = {
                k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in row.items()
            }
            provenance[str(clean.get("unique_id"))] = clean
    return Snapshot(
        pipeline=release.pipeline,
        release_id=release.release_id,
        manifest=release.manifest,
        columns=list(table.column_names),
        series=list(json_rows),
        json_rows=json_rows,
        provenance=provenance,
        table=table,
    )


class ReleaseCache:
    """The current-release snapshot of one pipeline, refreshed when the pointer changes."""

    def __init__(self, releases_root: Path, pipeline: str, pipeline_file: Path) -> None:
        self.releases_root = releases_root
        self.pipeline = pipeline
        self.base = releases.pipeline_dir(releases_root, pipeline)
        self.pointer = self.base / releases.POINTER
        self.pipeline_file = pipeline_file  # a cached pipeline whose file is gone is not served
        self._snapshot: Snapshot | None = None
        self._key: PointerKey | None = None
        self._load_lock = threading.Lock()
        self._previous: Snapshot | None = None  # a rollback usually returns to it

    @property
    def loading(self) -> bool:
        """True while a thread is loading a release (readers keep the held snapshot)."""
        return self._load_lock.locked()

    def peek(self) -> Snapshot | None:
        """The snapshot held now, without checking the pointer."""
        return self._snapshot

    def is_fresh(self) -> bool:
        """True when the pointer has not changed since the held snapshot was taken."""
        try:
            key = _pointer_key(os.stat(self.pointer))
        except FileNotFoundError:
            return self._key is None and self._snapshot is None
        return key == self._key

    def serving(self) -> Snapshot | None:
        """The snapshot to answer with now: the held one, with a background load started when
        the pointer has moved. ``None`` only before the first load (the caller loads)."""
        held = self._snapshot
        if held is not None and not self.is_fresh() and not self.loading:
            threading.Thread(
                target=self._refresh_quietly, name=f"release-load-{self.pipeline}", daemon=True
            ).start()
        return held

    def _refresh_quietly(self) -> None:
        try:
            self.refresh(wait=False)
        except Exception:  # a broken release must not kill the server; the old one stays
            log.exception("loading the current release of %r failed", self.pipeline)

    def refresh(self, *, wait: bool = True) -> Snapshot | None:
        """Bring the snapshot up to the pointer; blocking (reads files), so call it in a thread.

        With ``wait=False``, a caller that finds another thread loading returns the held
        snapshot instead of waiting for the new one.
        """
        if not self._load_lock.acquire(blocking=wait):
            return self._snapshot
        try:
            return self._refresh_locked()
        finally:
            self._load_lock.release()

    def _refresh_locked(self) -> Snapshot | None:
        try:
            fd = os.open(self.pointer, os.O_RDONLY)
        except FileNotFoundError:
            self._snapshot, self._key = None, None
            return None
        try:
            # Key and content come from the same open file, so they always belong together.
            key = _pointer_key(os.fstat(fd))
            if key == self._key:
                return self._snapshot
            with os.fdopen(fd, "rb", closefd=False) as handle:
                release_id = str(json.loads(handle.read())["release_id"])
        finally:
            os.close(fd)
        held = self._snapshot
        if held is None or held.release_id != release_id:
            known = {
                p.name for p in self.base.iterdir() if p.is_dir() and not p.name.startswith(".")
            }
            if release_id not in known:  # never build a path from an unchecked name
                raise NotFoundError(
                    f"the CURRENT pointer of {self.pipeline!r} names release {release_id!r}, "
                    "which is not in its release directory"
                )
            previous = self._previous
            if previous is not None and previous.release_id == release_id:
                fresh = previous
            else:
                fresh = load_snapshot(
                    releases.read_release(self.releases_root, self.pipeline, release_id)
                )
            self._previous = held
            held = fresh
        # One assignment each: a reader sees the old snapshot or the new one.
        self._snapshot = held
        self._key = key
        return held
