"""``steadycast forecast --format``: the bytes a user's script parses stay the same whichever
writer makes them (CSV: pandas' layout, JSON: one indented document), to stdout or a file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from steadycast.storage import releases
from steadycast.storage.export import export_forecast
from tests.observability_workspace import Observed


def _release(observed: Observed) -> tuple[str, pd.DataFrame]:
    release = releases.current(observed.ws.releases_dir, "meters")
    assert release is not None
    frame = releases.read_forecasts(release, None)
    frame["ds"] = pd.to_datetime(frame["ds"]).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return release.release_id, frame


def _export(observed: Observed, fmt: str, output: Path | None = None) -> str:
    out = io.StringIO()
    export_forecast(observed.ws, "meters", series=None, fmt=fmt, output=output, stdout=out)
    return out.getvalue() if output is None else output.read_text(encoding="utf-8")


def test_csv_is_pandas_layout_with_iso_times(observed: Observed, tmp_path: Path) -> None:
    _, frame = _release(observed)
    expected = frame.to_csv(index=False, lineterminator="\n")
    text = _export(observed, "csv")
    assert text == expected
    assert text.splitlines()[1].split(",")[1] == frame["ds"].iloc[0]
    assert _export(observed, "csv", tmp_path / "out" / "f.csv") == expected


def test_json_is_one_indented_document_with_the_release(observed: Observed, tmp_path: Path) -> None:
    release_id, frame = _release(observed)
    document = {
        "pipeline": "meters",
        "release_id": release_id,
        "rows": frame.to_dict(orient="records"),
    }
    expected = json.dumps(document, indent=1) + "\n"
    assert _export(observed, "json") == expected
    assert _export(observed, "json", tmp_path / "f.json") == expected
    assert json.loads(expected)["rows"][0]["ds"].endswith("Z")
