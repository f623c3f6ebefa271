"""Ingest: one input file becomes one batch, stored or quarantined row by row, never lost.

The row work runs inside DuckDB over the file (vectorised SQL, spilling to disk when the file is
larger than memory); Python only sees the distinct timestamps, to place local times in UTC.
A batch is one transaction: a process killed at any moment leaves it fully in or not in at all.
Parity ``rows_read == rows_stored + rows_quarantined`` is checked before the commit.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from steadycast.config import PipelineConfig
from steadycast.errors import InputFileError
from steadycast.ingestion._apply import apply_good_rows
from steadycast.ingestion._exact import exact_text, read_exact_lines
from steadycast.ingestion._ledger import BatchKey, Counts, check_parity, count_rows, record_batch
from steadycast.ingestion._progress import Progress, tracking
from steadycast.ingestion._quarantine import line_numbers, quarantine_checked, quarantine_rejected
from steadycast.ingestion._read import (
    Fingerprint,
    Origin,
    Stopped,
    file_format,
    fingerprint,
    refuse_junk,
)
from steadycast.ingestion._rows import Checked, read_and_check
from steadycast.ops.resources import Meter
from steadycast.storage import control, store
from steadycast.workspace import Workspace


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
    # Columns of the input that are not mapped by [source] (nor a covariate): not stored, said.
    ignored_columns: list[str] = field(default_factory=list)
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


def ingest_file(
    ws: Workspace,
    cfg: PipelineConfig,
    path: Path,
    progress: Progress | None = None,
    *,
    origin: Origin | None = None,
    display: str | None = None,
) -> BatchResult:
    """Ingest one file as one batch; a batch already ingested into this pipeline is skipped.

    The file is hashed in a thread while DuckDB reads it: the hash names the batch and is only
    needed to write it. A file the hash refuses (not text, not UTF-8) or has seen before stops
    the read at once. ``origin``: the file holds a DataFrame's rows (ingestion/frame.py).
    ``display``: the name the user knows the file by (an ``s3://`` URL, ``stdin``) when ``path``
    is a local copy of it: the ledger, the quarantine and every message use it instead.
    """
    if display is None or origin is not None:
        return _ingest_file(ws, cfg, path, progress, origin, None)
    try:
        return _ingest_file(ws, cfg, path, progress, origin, display)
    except InputFileError as exc:
        if exc.file != str(path):
            raise
        raise InputFileError(display, exc.problem.replace(str(path), display)) from None


def _ingest_file(
    ws: Workspace,
    cfg: PipelineConfig,
    path: Path,
    progress: Progress | None,
    origin: Origin | None,
    display: str | None,
) -> BatchResult:
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
                given = origin.fingerprint if origin else None
                hashing = pool.submit(_hash_watching, path, fmt, known, con, stop, given)
                try:
                    result = _ingest_batch(
                        con, cfg, path, fmt, hashing, known, progress, ws.temp_dir, origin, display
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
    given: Fingerprint | None = None,
) -> Fingerprint:
    """Fingerprint the file (unless ``given``); interrupt the read on ``con`` as soon as the
    file is refused or known to be a batch already ingested (either way the read is wasted)."""
    try:
        fp = given or fingerprint(path, fmt, stop)
    except Stopped:
        raise
    except BaseException:
        con.interrupt()
        raise
    if fp.sha256 in known and given is None:  # a given one is checked before the read
        con.interrupt()
    return fp


def _ingest_batch(
    con: duckdb.DuckDBPyConnection,
    cfg: PipelineConfig,
    path: Path,
    fmt: str,
    hashing: Future[Fingerprint],
    known: set[str],
    progress: Progress | None,
    temp_dir: Path,
    origin: Origin | None = None,
    name: str | None = None,
) -> BatchResult:
    """Read, check and write the batch inside the caller's transaction (committed here)."""
    display = origin.name if origin else name or str(path)
    if origin is not None and origin.fingerprint.sha256 in known:  # known before reading
        con.execute("ROLLBACK")
        return BatchResult(file=display, batch_id=origin.fingerprint.sha256[:16], status="skipped")
    try:
        checked = read_and_check(con, cfg, path, fmt, progress, temp_dir)
    except Exception:  # not a Ctrl-C: that stops the hash and leaves at once
        fp = hashing.result()  # the hash's verdict on the file comes first
        if fp.sha256 in known:
            con.execute("ROLLBACK")
            return BatchResult(file=display, batch_id=fp.sha256[:16], status="skipped")
        raise
    fp = hashing.result()
    key = BatchKey(cfg.name, fp.sha256[:16], display)
    if fp.sha256 in known:
        con.execute("ROLLBACK")
        return BatchResult(file=display, batch_id=key.batch_id, status="skipped")
    with tracking(con, progress, f"storing {path.name}"):
        counts = _write(con, cfg, key, fp, checked, path, origin)
    con.execute("COMMIT")
    return BatchResult(
        file=display,
        batch_id=key.batch_id,
        status="ingested",
        rows_read=counts.rows_read,
        rows_stored=counts.rows_stored,
        rows_quarantined=counts.rows_quarantined,
        quarantine_reasons=counts.quarantine_reasons,
        rows_new=counts.rows_new,
        rows_corrected=counts.rows_corrected,
        rows_unchanged=counts.rows_unchanged,
        time_format=checked.time_format,
        ignored_columns=_ignored(cfg, checked.ignored_columns),
    )


def _ignored(cfg: PipelineConfig, columns: tuple[str, ...]) -> list[str]:
    """The unmapped columns worth telling about: a covariate column is read by its own ingest
    (``--covariates``), so it is not ignored."""
    return [c for c in columns if c not in cfg.covariates.columns]


def _write(
    con: duckdb.DuckDBPyConnection,
    cfg: PipelineConfig,
    key: BatchKey,
    fp: Fingerprint,
    checked: Checked,
    path: Path,
    origin: Origin | None = None,
) -> Counts:
    """Quarantine the bad rows, apply the good ones (new, corrected, unchanged), check parity
    and write the ledger row; returns the batch's counts."""
    r = checked.rec.format(t="c")  # a row's index in the file, in ``checked c``
    header = 0 if fp.format == "parquet" else 1
    if origin is not None:  # a frame's rows are numbered from ``first_row``
        header = origin.first_row - 1
    line = line_numbers(con, r, header, checked.has_rejects)
    # The exact text of the quarantined lines is read back from the file in a thread while the
    # good rows are written (DuckDB works in its own threads meanwhile).
    reading = read_exact_lines(con, path, fp.format, r, checked.has_rejects)
    if checked.has_rejects:
        quarantine_rejected(con, key, checked.long_lines)
    applied = apply_good_rows(con, key.pipeline, key.batch_id)
    exact = exact_text(con, cfg, path, fp.format, r, reading)
    if exact is not None and origin is not None:
        exact = exact.assign(line=exact["rec"] + origin.first_row)
    quarantine_checked(con, key, r=r, line=line, exact=exact)
    counts = count_rows(con, key, checked.has_rejects, applied)
    check_parity(key, counts)
    record_batch(con, key, fp, counts, applied.batch_no)
    return counts


def ingest(ws: Workspace, pipeline: str, files: Any = None) -> list[BatchResult]:
    """Ingest files in order, or one DataFrame (pandas, pyarrow, or any Arrow stream) as one
    batch; each file is its own batch, so a failure leaves earlier ones stored.

    ``files``: a list of paths, one path, or a frame, whose columns are mapped by the
    pipeline's ``[source]`` table as a file's are; a frame's batch is named by its content, so
    ingesting the same frame twice is a skip. A path may be a folder, a glob, ``-`` (stdin) or
    an ``s3://`` URL (ingestion/sources.py). None: the pipeline's configured ``[source]``.
    """
    from steadycast.ingestion.frame import ingest_frame, is_frame
    from steadycast.ingestion.sources import ingest_args, ingest_configured

    cfg = ws.pipeline(pipeline)
    if files is None:
        return ingest_configured(ws, cfg)
    if is_frame(files):
        return [ingest_frame(ws, cfg, files)]
    return ingest_args(ws, cfg, files)


def quarantined(ws: Workspace, pipeline: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Quarantined rows of a pipeline with their reasons, newest batch first."""
    ws.pipeline(pipeline)
    sql = """
        SELECT q.batch_id, q.file, q.line, q.reason, q.detail, q.unique_id, q.raw
        FROM quarantine q LEFT JOIN batches b USING (pipeline, batch_id)
        WHERE q.pipeline = ? OR starts_with(q.pipeline, ?)
        ORDER BY b.ingested_at DESC, q.file, q.line
    """
    # The pipeline's covariate files are its own input too (ingestion/covariates.py).
    params: list[Any] = [pipeline, f"{pipeline}:covariate:"]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    with store.reading(ws.store_path) as con:
        cursor = con.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
