"""Sources: what a user names as input, expanded into batches of one file each.

``steadycast ingest PIPELINE ARG...`` and ``steadycast.ingest(ws, PIPELINE, [ARG, ...])`` take
files, folders, quoted globs (``'meters/*.csv'``, ``**`` allowed), ``-`` for stdin and
``s3://`` URLs; with no argument, the pipeline's ``[source]`` (a ``path`` of the same kinds, or a
PostgreSQL ``query``). Every file stays its own batch, named by its content, so the ledger's
per-file replay holds whatever the source: a re-run skips what is in already.

A folder holding ``key=value`` subfolders is a hive-partitioned Parquet dataset: each file is
its own batch, with the partition values from its path added to its rows as text columns (so
``[source] id_column`` may be a partition key such as ``meter``). Such a file is rewritten, with
those columns, through the frame path (frame.py), and named by its path.

Every argument is expanded before anything is read, so a glob that matches nothing, or a folder
holding no data file, stops the command before any batch is stored.
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from steadycast.errors import InputFileError, UsageError

if TYPE_CHECKING:
    from steadycast.config import PipelineConfig
    from steadycast.ingestion._progress import Progress
    from steadycast.ingestion.batch import BatchResult
    from steadycast.workspace import Workspace

STDIN = "-"
STDIN_NAME = "stdin"  # what the ledger, the quarantine and the messages call stdin's rows
# What a folder contributes: the formats ingest reads (the content decides the format; the name
# only picks the files). Names starting with "." or "_" are a writer's bookkeeping (_SUCCESS).
DATA_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet", ".pq")
GLOB_CHARS = re.compile(r"[*?\[]")
PARTITION = re.compile(r"^([^=]+)=(.*)$")
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # how hive writers spell a missing partition value


@dataclass(frozen=True)
class Input:
    """One batch to be: a local file, stdin, or an object URL still to fetch."""

    name: str  # what the ledger, the quarantine and the messages call it
    path: Path | None = None  # the local file; None for stdin and object URLs
    kind: str = "file"  # "file" | "stdin" | "object"
    # Values of a hive dataset's partition keys from the file's path, added to its rows.
    partitions: tuple[tuple[str, str | None], ...] = ()


def expand(args: Iterable[str | os.PathLike[str]], base: Path | None = None) -> list[Input]:
    """Every argument as the batches it names, in order; a relative path is taken from ``base``
    (the workspace folder, for ``[source] path``) or else the current folder."""
    inputs: list[Input] = []
    for arg in args:
        inputs.extend(_expand_one(os.fspath(arg), base))
    return inputs


def _expand_one(text: str, base: Path | None) -> list[Input]:
    if text == STDIN:
        return [Input(STDIN_NAME, kind="stdin")]
    if text.strip().lower().startswith("s3://"):
        return [Input(text.strip(), kind="object")]
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if path.is_dir():
        return _folder(path)
    if GLOB_CHARS.search(text) and not path.exists():
        return _glob(str(path), text, configured=base is not None)
    return [Input(str(path), path)]  # a file that is not there fails at its turn, as named


def _is_data_file(path: Path) -> bool:
    name = path.name.lower()
    return not name.startswith((".", "_")) and name.endswith(DATA_SUFFIXES) and path.is_file()


def _folder(folder: Path) -> list[Input]:
    """A folder's data files, sorted; a hive dataset's files (found at any depth) with their
    partition values."""
    if _is_hive(folder):
        found = [
            Input(str(p), p, partitions=partitions_of(p.relative_to(folder).parts[:-1]))
            for p in sorted(folder.rglob("*"))
            if _is_data_file(p) and not _hidden(p.relative_to(folder).parts)
        ]
    else:
        found = [Input(str(p), p) for p in sorted(folder.iterdir()) if _is_data_file(p)]
    if not found:
        raise UsageError(
            f"{folder}: the folder holds no CSV or Parquet file (looked for "
            f"{', '.join(DATA_SUFFIXES)}); name the files, or a glob such as '{folder}/*.txt'"
        )
    return found


def _is_hive(folder: Path) -> bool:
    return any(p.is_dir() and PARTITION.match(p.name) for p in folder.iterdir())


def _hidden(parts: tuple[str, ...]) -> bool:
    return any(part.startswith((".", "_")) for part in parts)


def partitions_of(parts: Iterable[str]) -> tuple[tuple[str, str | None], ...]:
    """The ``key=value`` folders of a path as (key, value) pairs, values unescaped as hive
    writers escape them (``%3A`` for ``:``); other folders are not partitions."""
    pairs: dict[str, str | None] = {}
    for part in parts:
        found = PARTITION.match(part)
        if found:
            value = unquote(found[2])
            pairs[unquote(found[1])] = None if value == HIVE_NULL else value
    return tuple(pairs.items())


def _glob(pattern: str, given: str, *, configured: bool = False) -> list[Input]:
    matched = [Path(p) for p in sorted(glob.glob(pattern, recursive=True))]
    files = [p for p in matched if p.is_file()]
    if not files:
        # Quoting is advice for a command line; a pattern from [source] path met no shell.
        fix = (
            f"check [source] path (a relative one is the workspace's: looked for {pattern})"
            if configured
            else "check it, and quote it so the shell does not expand it first"
        )
        raise UsageError(
            f"{given}: the pattern matches no file"
            + (f" (only folders: {matched[0]} ...)" if matched else "")
            + f"; {fix}"
        )
    return [Input(str(p), p) for p in files]


def ingest_inputs(
    ws: Workspace, cfg: PipelineConfig, inputs: list[Input], progress: Progress | None = None
) -> Iterator[BatchResult]:
    """Ingest each input as a batch, in order, yielding each result as it is stored: a failure
    leaves the earlier batches stored (and reported by the caller)."""
    for item in inputs:
        if item.kind == "stdin":
            yield _ingest_stdin(ws, cfg, progress)
        elif item.kind == "object":
            yield from _ingest_objects(ws, cfg, item.name, progress)
        else:
            path = item.path or Path(item.name)
            yield _ingest_local(ws, cfg, path, item.name, item.partitions, progress)


def _ingest_local(
    ws: Workspace,
    cfg: PipelineConfig,
    path: Path,
    name: str,
    partitions: tuple[tuple[str, str | None], ...],
    progress: Progress | None,
) -> BatchResult:
    from steadycast.ingestion._read import file_format
    from steadycast.ingestion.batch import ingest_file

    # Partition values are added to Parquet files; a CSV file keeps its lines and their numbers
    # (what its quarantine names), so it is ingested as it is and must hold the mapped columns.
    if partitions and path.is_file() and file_format(path) == "parquet":
        return _ingest_partitioned(ws, cfg, path, name, partitions)
    display = None if name == str(path) else name
    return ingest_file(ws, cfg, path, progress, display=display)


def _ingest_partitioned(
    ws: Workspace,
    cfg: PipelineConfig,
    path: Path,
    name: str,
    partitions: tuple[tuple[str, str | None], ...],
) -> BatchResult:
    """A hive dataset's file with its partition values as text columns (a column the file holds
    itself keeps the file's values), as one batch named by the file and those values."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from steadycast.ingestion.frame import ingest_frame

    try:
        table = pq.ParquetFile(path).read()
    except (OSError, pa.ArrowException) as exc:
        raise InputFileError(name, f"cannot be read as parquet ({exc})") from None
    for key, value in partitions:
        if key not in table.column_names:
            table = table.append_column(key, pa.array([value] * table.num_rows, pa.string()))
    return ingest_frame(ws, cfg, table, name=name, first_row=1)


def _ingest_stdin(ws: Workspace, cfg: PipelineConfig, progress: Progress | None) -> BatchResult:
    """Stdin's bytes (CSV, gzip CSV or Parquet) as one batch named ``stdin``: copied to the
    workspace's temporary folder first, since the hash and the quarantine's exact text read the
    file again."""
    from steadycast.ingestion.batch import ingest_file

    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(
            "'-' reads the rows from stdin, but nothing is piped in; for example "
            "`cat meters.csv | steadycast ingest PIPELINE -`"
        )
    ws.temp_dir.mkdir(parents=True, exist_ok=True)
    copy = ws.temp_dir / f"stdin-{secrets.token_hex(8)}"
    try:
        with copy.open("wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        return ingest_file(ws, cfg, copy, progress, display=STDIN_NAME)
    finally:
        copy.unlink(missing_ok=True)


def _ingest_objects(
    ws: Workspace, cfg: PipelineConfig, url: str, progress: Progress | None
) -> Iterator[BatchResult]:
    """Each object under ``url`` downloaded and ingested under its own URL; the downloads are
    removed whatever happens."""
    from steadycast.ingestion.objectstore import fetch

    ws.temp_dir.mkdir(parents=True, exist_ok=True)
    into = ws.temp_dir / f"objects-{secrets.token_hex(8)}"
    into.mkdir()
    try:
        for object_url, local in fetch(url, into):
            parts = _key_folders(url, object_url)
            yield _ingest_local(ws, cfg, local, object_url, partitions_of(parts), progress)
    finally:
        shutil.rmtree(into, ignore_errors=True)


def _key_folders(given: str, object_url: str) -> tuple[str, ...]:
    """The folders of an object's key below the URL given (where a dataset's partitions are)."""
    prefix = given.rstrip("/") + "/"
    rest = object_url[len(prefix) :] if object_url.startswith(prefix) else object_url
    return PurePosixPath(rest).parts[:-1]


def source_name(database: str) -> str:
    """What the ledger calls a query's rows: the database's URL without its user (the same
    database reached by another user is the same source)."""
    url = urlsplit(database)
    return f"postgresql://{url.hostname or 'localhost'}:{url.port or 5432}{url.path}"


def configured_batches(
    ws: Workspace, cfg: PipelineConfig, progress: Progress | None = None
) -> Iterator[BatchResult]:
    """The batches of the pipeline's ``[source]``, yielded as each is stored."""
    src = cfg.source
    if src.query:
        from steadycast.ingestion.frame import ingest_frame
        from steadycast.ingestion.postgres import read_query

        mapped = (src.id_column, src.time_column, src.value_column)
        rows = read_query(src.database, src.query, columns=mapped)
        yield ingest_frame(ws, cfg, rows, name=source_name(src.database), first_row=1)
        return
    if not src.path:
        raise UsageError(
            f"pipeline {cfg.name!r} has no source configured: name the files "
            f'(steadycast ingest {cfg.name} FILE...), or set [source] path = "data/*.csv" '
            f"(a file, folder, glob or s3:// URL) in pipelines/{cfg.name}.toml"
        )
    inputs = expand([src.path], base=ws.root)
    yield from ingest_inputs(ws, cfg, inputs, progress)


def ingest_configured(ws: Workspace, cfg: PipelineConfig) -> list[BatchResult]:
    """Ingest the pipeline's configured ``[source]`` (its path, or its query's rows); what the
    HTTP endpoint that starts an ingest calls."""
    return list(configured_batches(ws, cfg))


def ingest_args(ws: Workspace, cfg: PipelineConfig, args: Any) -> list[BatchResult]:
    """``steadycast.ingest`` with files: expanded, then ingested in order."""
    from steadycast.ingestion.frame import paths_of

    return list(ingest_inputs(ws, cfg, expand(paths_of(args))))
