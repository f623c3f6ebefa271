"""The Python API over DataFrames: a frame ingests as a file does (checks, quarantine named by
the row's position, ledger, replay), releases and scores read back as frames, and the one-call
forecast answers without leaving a workspace behind."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import steadycast
from steadycast.ingestion.batch import quarantined
from steadycast.quick import calendar_seasons
from steadycast.storage import store
from steadycast.workspace import Workspace
from tests.pipelines import pipeline_toml

HOURS = pd.date_range("2024-03-01", periods=10 * 24, freq="h")


def meters(ids: tuple[str, ...] = ("m1", "m2")) -> pd.DataFrame:
    """Hourly readings of a few meters with a daily cycle, in the pipeline's column names."""
    rng = np.random.default_rng(3)
    cycle = 1 + 0.5 * np.sin(2 * np.pi * HOURS.hour / 24)
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "meter_id": m,
                    "timestamp": HOURS,
                    "kwh": (i + 1) * cycle + rng.gamma(2, 0.05, len(HOURS)),
                }
            )
            for i, m in enumerate(ids)
        ],
        ignore_index=True,
    )


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    for name in ("meters", "filed"):
        (workspace.pipelines_dir / f"{name}.toml").write_text(
            pipeline_toml(max_value=1000, models=["SeasonalNaive"]), encoding="utf-8"
        )
    return workspace


def stored(ws: Workspace, pipeline: str) -> pd.DataFrame:
    with store.reading(ws.store_path) as con:
        return con.execute(
            "SELECT unique_id, ds, y FROM observations WHERE pipeline = ? ORDER BY unique_id, ds",
            [pipeline],
        ).fetchdf()


def bad_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Three bad rows at known positions: a negative value, an infinite one, no id."""
    bad = frame.copy()
    bad.loc[3, "kwh"] = -5.0
    bad.loc[17, "kwh"] = np.inf
    bad.loc[40, "meter_id"] = None
    return bad


# --- ingest -------------------------------------------------------------------------------


def test_a_frame_is_one_batch_with_bad_rows_named_by_their_position(ws: Workspace) -> None:
    frame = bad_rows(meters())
    [batch] = steadycast.ingest(ws, "meters", frame)
    assert batch.status == "ingested" and batch.file == "frame"
    assert batch.rows_read == len(frame) == batch.rows_stored + batch.rows_quarantined
    assert batch.rows_quarantined == 3
    found = pd.DataFrame(quarantined(ws, "meters")).sort_values("line")
    assert found["file"].unique().tolist() == ["frame"]
    assert found["line"].tolist() == [3, 17, 40]  # frame.iloc[line] is the row
    assert found["reason"].tolist() == ["below_min", "non_finite", "missing_id"]
    assert len(stored(ws, "meters")) == len(frame) - 3


def test_a_frame_is_checked_as_the_same_rows_in_a_file(ws: Workspace, tmp_path: Path) -> None:
    frame = bad_rows(meters())
    path = tmp_path / "meters.csv"
    frame.to_csv(path, index=False)
    [from_file] = steadycast.ingest(ws, "filed", [path])
    [from_frame] = steadycast.ingest(ws, "meters", frame)
    assert from_frame.quarantine_reasons == from_file.quarantine_reasons
    assert from_frame.rows_stored == from_file.rows_stored
    pd.testing.assert_frame_equal(stored(ws, "meters"), stored(ws, "filed"))


def test_the_same_frame_twice_is_one_batch_however_it_is_held(ws: Workspace) -> None:
    frame = meters()
    [first] = steadycast.ingest(ws, "meters", frame)
    table = pa.Table.from_pandas(frame)
    rechunked = pa.Table.from_batches(table.to_batches(max_chunksize=100))
    for same in (frame.copy(), table, rechunked, frame.set_axis(range(5, 5 + len(frame)))):
        [again] = steadycast.ingest(ws, "meters", same)
        assert (again.status, again.batch_id) == ("skipped", first.batch_id)
    [changed] = steadycast.ingest(ws, "meters", frame.assign(kwh=frame.kwh + 1))
    assert changed.status == "ingested" and changed.rows_corrected == len(frame)


def test_mixed_values_in_a_column_are_quarantined_row_by_row(ws: Workspace) -> None:
    frame = meters().astype({"kwh": object})
    frame.loc[7, "kwh"] = "n/a"
    [batch] = steadycast.ingest(ws, "meters", frame)
    assert batch.quarantine_reasons == {"not_a_number": 1}
    [row] = quarantined(ws, "meters")
    assert (row["line"], row["detail"]) == (7, "value 'n/a' is not a number")


def test_a_mapped_column_kept_as_the_index_is_read(ws: Workspace) -> None:
    [batch] = steadycast.ingest(ws, "meters", meters().set_index(["meter_id", "timestamp"]))
    assert batch.rows_stored == 2 * len(HOURS)


def test_aware_times_are_placed_in_utc(ws: Workspace) -> None:
    frame = meters(("m1",)).head(3)
    frame["timestamp"] = frame["timestamp"].dt.tz_localize("Europe/Berlin")
    steadycast.ingest(ws, "meters", frame)
    assert stored(ws, "meters")["ds"].dt.hour.tolist() == [23, 0, 1]  # the day before, in UTC


def test_a_frame_without_a_mapped_column_names_what_it_has(ws: Workspace) -> None:
    with pytest.raises(steadycast.InputFileError) as caught:
        steadycast.ingest(ws, "meters", meters().rename(columns={"kwh": "value"}))
    message = str(caught.value)
    assert message.startswith("frame: missing column(s) 'kwh'")
    assert "'value'" in message and "pipelines/meters.toml" in message


@pytest.mark.parametrize(
    "wrong",
    [{"meter_id": ["a"], "timestamp": ["2024-01-01"], "kwh": [1.0]}, 3, [1, 2], b"a.csv"],
    ids=["dict", "int", "list-of-ints", "bytes"],
)
def test_what_is_neither_files_nor_a_frame_is_a_type_error(ws: Workspace, wrong: object) -> None:
    with pytest.raises(TypeError, match="expected a list of files, one file, a pandas DataFrame"):
        steadycast.ingest(ws, "meters", wrong)
    assert stored(ws, "meters").empty


def test_one_path_is_one_file_not_its_characters(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    meters().to_csv(path, index=False)
    [batch] = steadycast.ingest(ws, "meters", str(path))
    assert batch.file == str(path) and batch.status == "ingested"


# --- read releases and scores ----------------------------------------------------------------


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, str, str]:
    """Two published releases; the second's history is 10% higher (within the gate's jump)."""
    ws = Workspace.init(tmp_path_factory.mktemp("published") / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(
        pipeline_toml(max_value=1000, models=["SeasonalNaive"]), encoding="utf-8"
    )
    steadycast.ingest(ws, "meters", meters())
    first = steadycast.run_pipeline(ws, "meters")
    steadycast.ingest(ws, "meters", meters().assign(kwh=lambda d: d.kwh * 1.1))
    second = steadycast.run_pipeline(ws, "meters")
    assert (first.status, second.status) == ("published", "published")
    assert first.release_id and second.release_id
    return ws, first.release_id, second.release_id


def test_releases_read_as_frames_with_their_provenance(
    published: tuple[Workspace, str, str],
) -> None:
    ws, first, second = published
    current = steadycast.read_forecast(ws, "meters")
    assert current["release_id"].unique().tolist() == [second]
    assert list(current.columns[:4]) == ["unique_id", "ds", "yhat", "model"]
    assert {"yhat_lo_80", "yhat_hi_95", "source", "selection_reason", "run_id"} <= set(current)
    assert len(current) == 2 * 12 and current["source"].notna().all()
    assert current.attrs["release_id"] == second
    older = steadycast.read_forecast(str(ws.root), "meters", release=first, series=["m2"])
    assert older["release_id"].unique().tolist() == [first]
    assert older["unique_id"].unique().tolist() == ["m2"]
    # The second release's history is 10% higher, and so are its forecasts.
    ratio = current.query("unique_id == 'm2'")["yhat"].mean() / older["yhat"].mean()
    assert ratio == pytest.approx(1.1, rel=0.01)


def test_an_unknown_release_or_run_is_not_found(published: tuple[Workspace, str, str]) -> None:
    ws, first, _ = published
    with pytest.raises(steadycast.NotFoundError, match="no release 'nope'"):
        steadycast.read_forecast(ws, "meters", release="nope")
    with pytest.raises(steadycast.NotFoundError, match="no series 'm9'"):
        steadycast.read_forecast(ws, "meters", release=first, series=["m9"])
    with pytest.raises(steadycast.NotFoundError, match="run 'nope'"):
        steadycast.read_scores(ws, "meters", run="nope")


def test_scores_read_as_a_long_frame_of_the_latest_run(
    published: tuple[Workspace, str, str],
) -> None:
    ws, first, second = published
    latest = steadycast.read_scores(ws, "meters")
    assert list(latest.columns) == [
        "run_id",
        "unique_id",
        "model",
        "window",
        "cutoff",
        "status",
        "metric",
        "value",
    ]
    assert latest["run_id"].unique().tolist() == [second]
    # Each window says which time its model last saw: one cutoff per window, older further back.
    ok = latest[latest["status"] == "ok"]
    assert ok["cutoff"].notna().all()
    newest = ok.groupby("window")["cutoff"].max().sort_index()
    assert newest.is_monotonic_decreasing and newest.is_unique
    assert {"mase", "smape", "rmsse"} <= set(latest["metric"])
    assert set(latest["unique_id"]) == {"m1", "m2"}
    assert steadycast.read_scores(ws, "meters", run=first)["run_id"].unique().tolist() == [first]


def test_nothing_published_yet_says_how_to_publish(ws: Workspace) -> None:
    with pytest.raises(steadycast.NotFoundError, match="steadycast run meters"):
        steadycast.read_forecast(ws, "meters")
    with pytest.raises(steadycast.NotFoundError, match="steadycast run meters"):
        steadycast.read_scores(ws, "meters")


# --- the one-call forecast -------------------------------------------------------------------


def nixtla(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={"meter_id": "unique_id", "timestamp": "ds", "kwh": "y"})


def test_one_call_forecasts_every_series_and_leaves_no_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # clean input: no warning at all
        out = steadycast.forecast(
            nixtla(meters()), freq="1h", h=6, levels=[90], models=["SeasonalNaive"]
        )
    assert list(out.columns) == ["unique_id", "ds", "yhat", "model", "yhat_lo_90", "yhat_hi_90"]
    assert len(out) == 2 * 6 and out["model"].unique().tolist() == ["SeasonalNaive"]
    assert out["ds"].min() == HOURS[-1] + pd.Timedelta("1h")
    assert out.attrs["rows_rejected"] == 0 and out.attrs["gate"]
    assert list(tmp_path.iterdir()) == []  # the temporary workspace is gone


def test_one_call_left_out_rows_warn_and_come_back_with_details() -> None:
    frame = nixtla(bad_rows(meters()))
    with pytest.warns(UserWarning, match=r"2 of 480 rows were left out .*rows 17, 40 of the frame"):
        result = steadycast.forecast(frame, freq="1h", h=6, models=["SeasonalNaive"], details=True)
    assert isinstance(result, steadycast.QuickForecast)
    # No min_value here: a negative reading is kept; infinite and id-less rows are not.
    assert result.quarantine["row"].tolist() == [17, 40]
    assert result.quarantine["reason"].tolist() == ["non_finite", "missing_id"]
    assert set(result.provenance["unique_id"]) == {"m1", "m2"}
    assert not result.scores.empty and result.run["status"] == "published"


def test_one_call_keeps_the_callers_names_and_zone() -> None:
    frame = meters(("m1",))
    frame["timestamp"] = frame["timestamp"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo")
    out = steadycast.forecast(
        frame,
        freq="1h",
        h=3,
        id_col="meter_id",
        time_col="timestamp",
        target_col="kwh",
        models=["SeasonalNaive"],
    )
    assert list(out.columns[:4]) == ["meter_id", "timestamp", "yhat", "model"]
    assert str(out["timestamp"].dt.tz) == "Asia/Tokyo"
    assert out["timestamp"].iloc[0] == frame["timestamp"].iloc[-1] + pd.Timedelta("1h")


def test_one_call_a_held_run_raises_naming_the_gate() -> None:
    # The only candidate raises on every series: every series is on a fallback, the gate holds.
    with pytest.raises(steadycast.SteadycastError, match=r"held by the gate.*fallback_share"):
        steadycast.forecast(nixtla(meters()), freq="1h", h=6, models=["ChaosRaise"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"freq": "1h", "h": 0}, "h must be a whole number"), ({"freq": "hourly", "h": 3}, "freq")],
)
def test_one_call_bad_arguments_are_usage_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(steadycast.UsageError, match=message):
        steadycast.forecast(nixtla(meters()), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("freq", "seasons"),
    [("1h", [24, 168]), ("30min", [48, 336]), ("1D", [7]), ("W", [52]), ("MS", [12]), ("QS", [4])],
)
def test_one_call_seasons_default_to_the_calendar(freq: str, seasons: list[int]) -> None:
    assert calendar_seasons(freq) == seasons
