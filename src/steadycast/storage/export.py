"""Export the current release in the contract's columns, as CSV, Parquet or JSON."""

from __future__ import annotations

import json
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


def export_forecast(
    ws: Workspace,
    pipeline: str,
    *,
    series: list[str] | None,
    fmt: str,
    output: Path | None,
    stdout: IO[str],
) -> None:
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
    if fmt == "csv":
        text = _iso(frame).to_csv(index=False)
    else:
        text = (
            json.dumps(
                {
                    "pipeline": pipeline,
                    "release_id": release_id,
                    "rows": _iso(frame).to_dict(orient="records"),
                },
                indent=1,
            )
            + "\n"
        )
    if output is None:
        stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
