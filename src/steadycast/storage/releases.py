"""Immutable releases and the current pointer.

    releases/PIPELINE/RELEASE_ID/forecasts.parquet   the forecasts (export columns + provenance)
    releases/PIPELINE/RELEASE_ID/manifest.json       run, time, content hash, counts
    releases/PIPELINE/CURRENT                        {"release_id": ...}, replaced atomically

A release directory is written under a temporary name, fsynced and renamed into place; the
pointer is written to a temporary file, fsynced and renamed over CURRENT. A reader therefore
sees the old release or the new one, never half of either, and serving never waits on a run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from steadycast.errors import NotFoundError, SteadycastError
from steadycast.storage.control import utcnow

POINTER = "CURRENT"
FORECASTS = "forecasts.parquet"
MANIFEST = "manifest.json"
# A run the gate held keeps its would-be release in runs/RUN_ID/held/ until approved.
HELD = "held"


@dataclass(frozen=True)
class Release:
    pipeline: str
    release_id: str
    path: Path
    manifest: dict[str, Any]

    @property
    def forecasts_path(self) -> Path:
        return self.path / FORECASTS


def fsync_path(path: Path) -> None:
    """Flush a file or a directory (its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durable(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def content_hash(forecasts: pd.DataFrame) -> str:
    """A hash of what a release says, independent of row order and of when it was made."""
    cols = sorted(forecasts.columns)
    frame = forecasts[cols].sort_values(["unique_id", "ds"], ignore_index=True)
    digest = hashlib.sha256()
    digest.update(",".join(cols).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).values.tobytes())
    return digest.hexdigest()


def pipeline_dir(releases_root: Path, pipeline: str) -> Path:
    return releases_root / pipeline


def write_release(
    releases_root: Path,
    pipeline: str,
    run_id: str,
    forecasts: pd.DataFrame,
    meta: dict[str, Any],
    extras: dict[str, pd.DataFrame] | None = None,
) -> Release:
    """Write an immutable release (not yet current); ``extras`` go beside it as NAME.parquet."""
    digest = content_hash(forecasts)
    release_id = f"{run_id}"
    base = pipeline_dir(releases_root, pipeline)
    base.mkdir(parents=True, exist_ok=True)
    final = base / release_id
    if final.exists():
        # Written before a crash: the content is immutable, so it is reused as it is.
        return read_release(releases_root, pipeline, release_id)
    tmp = base / f".tmp-{release_id}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    manifest = {
        "pipeline": pipeline,
        "release_id": release_id,
        "run_id": run_id,
        "created_at": utcnow(),
        "content_sha256": digest,
        "rows": len(forecasts),
        "series": int(forecasts["unique_id"].nunique()) if len(forecasts) else 0,
        **meta,
    }
    try:
        tmp.mkdir()
        table = pa.Table.from_pandas(forecasts, preserve_index=False)
        pq.write_table(table, tmp / FORECASTS)
        for name, frame in (extras or {}).items():
            pq.write_table(
                pa.Table.from_pandas(frame, preserve_index=False),
                tmp / f"{name}.parquet",
            )
        for written in tmp.iterdir():
            with written.open("rb") as handle:
                os.fsync(handle.fileno())
        _write_durable(tmp / MANIFEST, json.dumps(manifest, indent=2, default=str).encode())
        fsync_path(tmp)
        os.rename(tmp, final)
        fsync_path(base)
    except OSError as exc:
        # A full or read-only disk: leave no half-written directory taking space behind.
        shutil.rmtree(tmp, ignore_errors=True)
        raise SteadycastError(
            f"release {release_id} of pipeline {pipeline!r} cannot be written in {base} "
            f"({exc.strerror or exc}); nothing was published, the current release is unchanged"
        ) from exc
    return Release(pipeline, release_id, final, manifest)


def make_current(releases_root: Path, pipeline: str, release_id: str) -> None:
    """Point CURRENT at a release, atomically."""
    base = pipeline_dir(releases_root, pipeline)
    if not (base / release_id / MANIFEST).exists():
        raise NotFoundError(f"no release {release_id!r} of pipeline {pipeline!r}")
    tmp = base / f".{POINTER}.{os.getpid()}.tmp"
    try:
        _write_durable(tmp, json.dumps({"release_id": release_id, "since": utcnow()}).encode())
        os.replace(tmp, base / POINTER)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SteadycastError(
            f"the pointer {base / POINTER} cannot be written ({exc.strerror or exc}); "
            f"release {release_id} was not made current, the current release is unchanged"
        ) from exc
    fsync_path(base)


def current_id(releases_root: Path, pipeline: str) -> str | None:
    pointer = pipeline_dir(releases_root, pipeline) / POINTER
    try:
        return str(json.loads(pointer.read_text())["release_id"])
    except FileNotFoundError:
        return None


def read_release(releases_root: Path, pipeline: str, release_id: str) -> Release:
    path = pipeline_dir(releases_root, pipeline) / release_id
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise NotFoundError(f"no release {release_id!r} of pipeline {pipeline!r}") from None
    return Release(pipeline, release_id, path, manifest)


def current(releases_root: Path, pipeline: str) -> Release | None:
    release_id = current_id(releases_root, pipeline)
    return read_release(releases_root, pipeline, release_id) if release_id else None


def list_releases(releases_root: Path, pipeline: str) -> list[Release]:
    """Every release of a pipeline, newest first."""
    base = pipeline_dir(releases_root, pipeline)
    if not base.exists():
        return []
    found = [
        read_release(releases_root, pipeline, p.name)
        for p in base.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).exists()
    ]
    return sorted(found, key=lambda r: str(r.manifest.get("created_at", "")), reverse=True)


def read_forecasts(release: Release, series: list[str] | None = None) -> pd.DataFrame:
    filters = [("unique_id", "in", series)] if series else None
    return pq.read_table(release.forecasts_path, filters=filters).to_pandas()


def previous_release(releases_root: Path, pipeline: str) -> Release | None:
    """The release published before the current one (what a plain rollback returns to)."""
    current_release = current_id(releases_root, pipeline)
    ordered = list_releases(releases_root, pipeline)
    ids = [r.release_id for r in ordered]
    if current_release not in ids:
        return ordered[0] if ordered else None
    index = ids.index(current_release)
    return ordered[index + 1] if index + 1 < len(ordered) else None
