"""Export the current release in the contract's columns, as CSV, Parquet or JSON.

Each format is written by its library straight into the destination (pandas' CSV writer,
the json module's incremental encoder, pyarrow's Parquet writer), piece by piece: the whole
file never exists as one string in memory.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pandas as pd

from steadycast.errors import NotFoundError, UsageError
from steadycast.storage import releases
from steadycast.workspace import Workspace

FORMATS = ("csv", "parquet", "json")


def current_forecast(
    ws: Workspace, pipeline: str, series: list[str] | None = None
) -> tuple[str, pd.DataFrame]:
    """(release_id, forecasts) of the pipeline's current release, optionally for some series."""
    ws.pipeline(pipeline)
    release = releases.current(ws.releases_dir, pipeline)
    if release is None:
        raise NotFoundError(
            f"pipeline {pipeline!r} has no published release yet; run `steadycast run {pipeline}`"
        )
    frame = releases.read_forecasts(release, series)
    if series:
        missing = sorted(set(series) - set(frame["unique_id"]))
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            raise NotFoundError(
                f"no series {shown} in release {release.release_id} of {pipeline!r}"
            )
    return release.release_id, frame


def _iso(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["ds"] = pd.to_datetime(out["ds"]).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def _make_folder(output: Path) -> None:
    """``-o out/f.csv`` in a fresh checkout: the folder is made, as a user expects; what cannot
    be made (a file in the way, no permission) is one line naming it."""
    if output.is_dir():
        raise UsageError(f"-o {output}: is a folder; name a file, for example {output / 'f.csv'}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"-o {output}: cannot create the folder {output.parent} ({exc.strerror or exc}); "
            "name a file in a folder you can write"
        ) from None


def _write_csv(frame: pd.DataFrame, out: IO[str]) -> None:
    # pandas writes in chunks of rows; "\n" whatever the platform, as the HTTP export does.
    _iso(frame).to_csv(out, index=False, lineterminator="\n")


def _write_json(pipeline: str, release_id: str, frame: pd.DataFrame, out: IO[str]) -> None:
    document = {
        "pipeline": pipeline,
        "release_id": release_id,
        "rows": _iso(frame).to_dict(orient="records"),
    }
    for piece in json.JSONEncoder(indent=1).iterencode(document):
        out.write(piece)
    out.write("\n")


def export_forecast(
    ws: Workspace,
    pipeline: str,
    *,
    series: list[str] | None,
    fmt: str,
    output: Path | None,
    stdout: IO[str],
) -> None:
    """Write the pipeline's current release (or some of its series) as ``fmt`` to ``output``,
    or to ``stdout`` when there is none (not Parquet: it is binary)."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    release_id, frame = current_forecast(ws, pipeline, series)
    if output is not None:
        _make_folder(output)
    if fmt == "parquet":
        if output is None:
            raise UsageError("--format parquet needs -o FILE (Parquet is binary)")
        frame.to_parquet(output, index=False)
        return
    write: Callable[[IO[str]], None]
    if fmt == "csv":
        write = functools.partial(_write_csv, frame)
    else:
        write = functools.partial(_write_json, pipeline, release_id, frame)
    if output is None:
        write(stdout)
    else:
        with output.open("w", encoding="utf-8", newline="") as f:
            write(f)
