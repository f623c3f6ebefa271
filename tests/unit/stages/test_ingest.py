from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steadycast.errors import InputFileError
from steadycast.ingestion import REASONS, ingest, ingest_file, quarantined
from steadycast.storage import store
from steadycast.workspace import Workspace
from tests.conftest import run_cli

HEADER = "meter_id,timestamp,kwh\n"

# Every kind of bad row next to good ones, each with the reason it must get.
MIXED = [
    ("a,2024-01-01 00:00,1.5", None),
    ("a,2024-01-01 01:00,2", None),
    ("a,2024-01-01 02:00:00,3", None),
    (",2024-01-01 03:00,1", "missing_id"),
    ("a,yesterday,1", "unparseable_time"),
    ("a,2024-01-01 04:00,", "missing_value"),
    ("a,2024-01-01 05:00,lots", "not_a_number"),
    ("a,2024-01-01 06:00,nan", "non_finite"),
    ("a,2024-01-01 07:00,-inf", "non_finite"),
    ("a,2024-01-01 08:00,-0.5", "below_min"),
    ("a,2024-01-01 09:00,1e308", "above_max"),
    ("a,2024-01-01 10:17,1", "misaligned"),
    ("b,2024-01-01 00:00,7,extra", "malformed_row"),
    ("b,2024-01-01 00:00,7", None),
    ("b,2024-01-01 00:00,7", "duplicate"),
    ("c,2024-01-01 00:00,1", "conflicting_duplicate"),
    ("c,2024-01-01 00:00,2", "conflicting_duplicate"),
    ("c,2024-01-01T01:00:00Z,4", None),
    ("c,1704074400,5", None),  # epoch seconds: 2024-01-01 02:00 UTC
]


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def observations(ws: Workspace, pipeline: str = "meters") -> pd.DataFrame:
    with store.reading(ws.store_path) as con:
        return con.execute(
            "SELECT unique_id, ds, y FROM observations WHERE pipeline = ? ORDER BY unique_id, ds",
            [pipeline],
        ).fetchdf()


def test_every_kind_of_bad_row_gets_its_reason_and_line(
    workspace: Workspace, make_pipeline: Callable[..., str], tmp_path: Path
) -> None:
    make_pipeline()
    path = write_csv(tmp_path / "mixed.csv", [r for r, _ in MIXED])
    [batch] = ingest(workspace, "meters", [path])
    expected: dict[str, int] = {}
    for _, reason in MIXED:
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    assert batch.status == "ingested"
    assert batch.rows_read == len(MIXED)
    assert batch.rows_stored == sum(1 for _, r in MIXED if r is None)
    assert batch.rows_quarantined == sum(expected.values())
    assert batch.quarantine_reasons == dict(sorted(expected.items()))
    rows = quarantined(workspace, "meters")
    by_line = {r["line"]: r for r in rows}
    for index, (text, reason) in enumerate(MIXED):
        line = index + 2  # the header is line 1
        if reason is None or (reason == "duplicate" and line not in by_line):
            continue
        assert by_line[line]["reason"] == reason, text
        assert by_line[line]["file"] == str(path)
        assert by_line[line]["detail"]
    assert by_line[14]["raw"] == "b,2024-01-01 00:00,7,extra"
    assert "10:17:00 is not on the 1h grid" in by_line[13]["detail"]
    stored = observations(workspace)
    assert set(stored["unique_id"]) == {"a", "b", "c"}
    c = stored[stored["unique_id"] == "c"]["ds"].tolist()
    assert c == [pd.Timestamp("2024-01-01 01:00"), pd.Timestamp("2024-01-01 02:00")]


def test_reingest_is_skipped_and_correction_wins_with_history(
    workspace: Workspace, make_pipeline: Callable[..., str], tmp_path: Path
) -> None:
    make_pipeline()
    first = write_csv(tmp_path / "day1.csv", ["a,2024-01-01 00:00,1", "a,2024-01-01 01:00,2"])
    [b1] = ingest(workspace, "meters", [first])
    [again] = ingest(workspace, "meters", [first])
    assert again.status == "skipped" and again.batch_id == b1.batch_id
    assert again.rows_stored == 0
    # The same rows in a gzip file are the same content: skipped too.
    gz = tmp_path / "day1.csv.gz"
    gz.write_bytes(gzip.compress(first.read_bytes()))
    assert ingest(workspace, "meters", [gz])[0].status == "skipped"

    fix = write_csv(
        tmp_path / "fix.csv",
        ["a,2024-01-01 01:00,20", "a,2024-01-01 02:00,3", "a,2024-01-01 00:00,1"],
    )
    [b2] = ingest(workspace, "meters", [fix])
    assert (b2.rows_new, b2.rows_corrected, b2.rows_unchanged) == (1, 1, 1)
    assert observations(workspace)["y"].tolist() == [1.0, 20.0, 3.0]
    with store.reading(workspace.store_path) as con:
        history = con.execute(
            "SELECT unique_id, ds, y, batch_id, superseded_by FROM observation_history"
        ).fetchall()
    assert history == [
        ("a", pd.Timestamp("2024-01-01 01:00").to_pydatetime(), 2.0, b1.batch_id, b2.batch_id)
    ]


def test_parquet_and_gzip_inputs(
    workspace: Workspace, make_pipeline: Callable[..., str], tmp_path: Path
) -> None:
    make_pipeline()
    frame = pd.DataFrame(
        {
            "meter_id": ["p", "p", "p"],
            "timestamp": pd.to_datetime(
                ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 01:30"]
            ),
            "kwh": [1.0, float("nan"), 3.0],
        }
    )
    frame.to_parquet(tmp_path / "x.parquet")
    gz = tmp_path / "y.csv.gz"
    gz.write_bytes(gzip.compress((HEADER + "g,2024-01-01 00:00,1\n").encode()))
    pq, gzb = ingest(workspace, "meters", [tmp_path / "x.parquet", gz])
    assert (pq.rows_read, pq.rows_stored) == (3, 1)
    assert pq.quarantine_reasons == {"misaligned": 1, "missing_value": 1}
    assert (gzb.rows_read, gzb.rows_stored) == (1, 1)


def test_inferred_and_explicit_time_formats(
    workspace: Workspace, make_pipeline: Callable[..., str], tmp_path: Path
) -> None:
    make_pipeline("us", frequency="1D", season_lengths="[7]")
    [b] = ingest(
        workspace, "us", [write_csv(tmp_path / "us.csv", ["x,01/31/2024,1", "x,02/01/2024,2"])]
    )
    assert b.rows_stored == 2 and b.time_format == "%m/%d/%Y"
    make_pipeline("eu", frequency="1D", season_lengths="[7]", time_format="%d.%m.%Y")
    [b] = ingest(
        workspace, "eu", [write_csv(tmp_path / "eu.csv", ["x,31.01.2024,1", "x,2024-02-01,2"])]
    )
    assert b.rows_stored == 1 and b.quarantine_reasons == {"unparseable_time": 1}


def test_snap_to_frequency_floors_instead_of_quarantining(
    workspace: Workspace, make_pipeline: Callable[..., str], tmp_path: Path
) -> None:
    make_pipeline(extra="[ingest]\nsnap_to_frequency = true\n")
    [b] = ingest(workspace, "meters", [write_csv(tmp_path / "s.csv", ["a,2024-01-01 10:17,1"])])
    assert b.rows_stored == 1
    assert observations(workspace)["ds"].tolist() == [pd.Timestamp("2024-01-01 10:00")]


@pytest.mark.parametrize(
    ("zone", "spring", "autumn"),
    [
        ("Europe/London", "2024-03-31", "2024-10-27"),
        ("Australia/Sydney", "2024-10-06", "2024-04-07"),
        ("America/Sao_Paulo", "2018-11-04", "2019-02-16"),
    ],
)
def test_daylight_saving_no_hour_lost_none_doubled(
    workspace: Workspace,
    make_pipeline: Callable[..., str],
    tmp_path: Path,
    zone: str,
    spring: str,
    autumn: str,
) -> None:
    """A meter logging local wall-clock hours through both changes lands on a clean UTC grid."""
    make_pipeline(timezone=zone)
    rows = []
    for day in (spring, autumn):
        start = pd.Timestamp(f"{day} 12:00", tz=zone) - pd.Timedelta(hours=18)
        instants = pd.date_range(start, periods=36, freq="1h")
        rows += [f"m,{t.strftime('%Y-%m-%d %H:%M')},{i}" for i, t in enumerate(instants)]
    [b] = ingest(workspace, "meters", [write_csv(tmp_path / "dst.csv", rows)])
    assert b.rows_quarantined == 0, quarantined(workspace, "meters")
    ds = observations(workspace)["ds"]
    for day in (spring, autumn):
        start = (
            (pd.Timestamp(f"{day} 12:00", tz=zone) - pd.Timedelta(hours=18))
            .tz_convert("UTC")
            .tz_localize(None)
        )
        window = ds[(ds >= start) & (ds < start + pd.Timedelta(hours=36))]
        assert window.tolist() == list(pd.date_range(start, periods=36, freq="1h"))


def test_nonexistent_and_unplaceable_local_times_are_quarantined(
    workspace: Workspace, make_pipeline: Callable[..., str], tmp_path: Path
) -> None:
    make_pipeline(timezone="Europe/London")
    rows = [
        "m,2024-03-31 01:00,1",
        "n,2024-10-27 01:00,1",
        "k,2024-10-27 01:00,1",
        "k,2024-10-27 01:00,2",
    ]
    [b] = ingest(workspace, "meters", [write_csv(tmp_path / "gap.csv", rows)])
    assert b.quarantine_reasons == {"ambiguous_local_time": 1, "nonexistent_local_time": 1}
    # k reports the repeated hour twice: first is summer time (00:00 UTC), second winter (01:00).
    k = observations(workspace).query("unique_id == 'k'")
    assert k["ds"].tolist() == [pd.Timestamp("2024-10-27 00:00"), pd.Timestamp("2024-10-27 01:00")]
    assert k["y"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "the file is empty"),
        (
            b"meter_id,timestamp,kwh\nm,2024-01-01 00:00,caf\xe9\n",
            r"not UTF-8 text \(invalid byte at offset \d+, line 2\)",
        ),
        (b"\x00\x01\x02binary junk", "binary data"),
        (
            b"id,time,value\nm,2024-01-01 00:00,1\n",
            r"missing column\(s\) 'meter_id', 'timestamp', 'kwh' \(columns found: 'id', 'time', 'value'\)",
        ),
    ],
)
def test_unreadable_file_fails_naming_file_and_problem(
    workspace: Workspace,
    make_pipeline: Callable[..., str],
    tmp_path: Path,
    content: bytes,
    problem: str,
) -> None:
    make_pipeline()
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=rf"{path}: {problem}"):
        ingest(workspace, "meters", [path])
    with store.reading(workspace.store_path) as con:
        assert con.execute("SELECT count(*) FROM batches").fetchone() == (0,)


def test_cli_json_contract_and_partial_failure(
    workspace: Workspace, make_pipeline: Callable[..., str], tmp_path: Path
) -> None:
    make_pipeline()
    good = write_csv(tmp_path / "good.csv", ["a,2024-01-01 00:00,1", "a,2024-01-01 00:30,1"])
    missing = tmp_path / "missing.csv"
    result = run_cli(
        "ingest", "meters", str(good), str(missing), "-w", str(workspace.root), "--json"
    )
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["pipeline"] == "meters"
    assert doc["batches"] == [
        {
            "file": str(good),
            "batch_id": doc["batches"][0]["batch_id"],
            "status": "ingested",
            "rows_read": 2,
            "rows_stored": 1,
            "rows_quarantined": 1,
            "quarantine_reasons": {"misaligned": 1},
        }
    ]
    assert f"{missing}: no such file" in result.stderr
    # The earlier file of the same command stays ingested.
    assert len(observations(workspace)) == 1
    listing = run_cli("quarantine", "meters", "-w", str(workspace.root), "--json")
    assert json.loads(listing.stdout)["rows"][0]["reason"] == "misaligned"


ROW_KINDS = {
    "good": None,
    "no_id": "missing_id",
    "bad_time": "unparseable_time",
    "empty_value": "missing_value",
    "text_value": "not_a_number",
    "inf": "non_finite",
    "negative": "below_min",
    "huge": "above_max",
    "off_grid": "misaligned",
    "too_many_columns": "malformed_row",
}


def render(kind: str, series: str, hour: int) -> str:
    ts = f"2024-01-{1 + hour // 24:02d} {hour % 24:02d}:00"
    return {
        "good": f"{series},{ts},{hour}",
        "no_id": f",{ts},1",
        "bad_time": f"{series},not a time,1",
        "empty_value": f"{series},{ts},",
        "text_value": f"{series},{ts},twelve",
        "inf": f"{series},{ts},inf",
        "negative": f"{series},{ts},-3",
        "huge": f"{series},{ts},1e300",
        "off_grid": f"{series},2024-01-01 00:{1 + hour % 58:02d},1",
        "too_many_columns": f"{series},{ts},1,2",
    }[kind]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(ROW_KINDS)), st.sampled_from("xyz")),
        min_size=1,
        max_size=60,
    )
)
def test_property_stored_plus_quarantined_equals_read(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str]]
) -> None:
    root = tmp_path_factory.mktemp("prop")
    ws = Workspace.init(root / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(
        '[source]\nid_column="meter_id"\ntime_column="timestamp"\nvalue_column="kwh"\n'
        '[series]\nfrequency="1h"\nhorizon=1\nmin_value=0\nmax_value=1e6\n'
    )
    # Each row gets its own hour so good rows never collide into duplicates.
    lines = [render(kind, series, hour) for hour, (kind, series) in enumerate(rows)]
    path = write_csv(root / "rows.csv", lines)
    [b] = ingest(ws, "meters", [path])
    assert b.rows_read == len(rows)
    assert b.rows_stored + b.rows_quarantined == b.rows_read
    expected: dict[str, int] = {}
    for kind, _ in rows:
        reason = ROW_KINDS[kind]
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    assert b.quarantine_reasons == dict(sorted(expected.items()))
    assert set(b.quarantine_reasons) <= set(REASONS)
    with duckdb.connect(str(ws.store_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM observations").fetchone() == (b.rows_stored,)
        assert con.execute(
            "SELECT count(*) FROM quarantine WHERE reason IS NULL OR reason = ''"
        ).fetchone() == (0,)


def test_progress_is_reported_for_reading_and_storing(
    workspace: Workspace, make_pipeline: Callable[..., str], tmp_path: Path
) -> None:
    make_pipeline()
    seen: list[tuple[str, int, int]] = []
    cfg = workspace.pipeline("meters")
    path = write_csv(tmp_path / "p.csv", [f"a,2024-01-01 {h:02d}:00,{h}" for h in range(24)])
    ingest_file(
        workspace, cfg, path, progress=lambda label, done, total: seen.append((label, done, total))
    )
    assert ("reading p.csv", 100, 100) in seen and ("storing p.csv", 100, 100) in seen
    assert all(0 <= done <= total == 100 for _, done, total in seen)


# Grids where a step is exact (hourly UTC) and where it is not (a Sydney day is 23 to 25 hours
# long; months differ in length): the duplicate check must find every repeated key on each.
GRIDS = {
    "hourly_utc": ("1h", "UTC", lambda k: pd.Timestamp("2024-01-01") + pd.Timedelta(hours=k)),
    "daily_sydney": (
        "1D",
        "Australia/Sydney",
        lambda k: pd.Timestamp("2024-03-25") + pd.Timedelta(days=k),  # across the April change
    ),
    "monthly": ("MS", "UTC", lambda k: pd.Timestamp("2023-01-01") + pd.DateOffset(months=k)),
}


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    grid=st.sampled_from(sorted(GRIDS)),
    keys=st.lists(st.tuples(st.sampled_from("pqr"), st.integers(0, 20)), min_size=1, max_size=60),
)
def test_property_every_repeated_key_is_found(
    tmp_path_factory: pytest.TempPathFactory, grid: str, keys: list[tuple[str, int]]
) -> None:
    frequency, zone, time_of = GRIDS[grid]
    root = tmp_path_factory.mktemp("dupes")
    ws = Workspace.init(root / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(
        '[source]\nid_column="meter_id"\ntime_column="timestamp"\nvalue_column="kwh"\n'
        f'timezone="{zone}"\n[series]\nfrequency="{frequency}"\nhorizon=1\n'
    )
    # A key's copies carry the same value, so each extra copy is an exact duplicate.
    lines = [f"{s},{time_of(k):%Y-%m-%d %H:%M:%S},{k}" for s, k in keys]
    [b] = ingest(ws, "meters", [write_csv(root / "rows.csv", lines)])
    distinct = len(set(keys))
    assert b.rows_stored == distinct
    assert b.quarantine_reasons == (
        {"duplicate": len(keys) - distinct} if len(keys) > distinct else {}
    )
    stored = observations(ws)
    assert not stored.duplicated(["unique_id", "ds"]).any()


def test_reingesting_a_large_file_is_skipped_and_changes_nothing(
    workspace: Workspace, make_pipeline: Callable[..., str], tmp_path: Path
) -> None:
    """The content hash runs while the file is read; a known file stops the read and the
    batch is reported skipped, with the store as it was."""
    ws = workspace
    make_pipeline()
    hours = pd.date_range("2024-01-01", periods=2_000, freq="h")
    lines = [f"m{m:03d},{t:%Y-%m-%d %H:%M:%S},{m % 7}" for t in hours for m in range(100)]
    path = write_csv(tmp_path / "big.csv", lines)
    [first] = ingest(ws, "meters", [path])
    assert first.status == "ingested" and first.rows_stored == 200_000
    [again] = ingest(ws, "meters", [path])
    assert (again.status, again.batch_id) == ("skipped", first.batch_id)
    assert len(observations(ws)) == 200_000
    with store.reading(ws.store_path) as con:
        assert con.execute("SELECT count(*) FROM batches").fetchone() == (1,)


def test_a_file_larger_than_a_small_memory_cap_streams(tmp_path: Path) -> None:
    """DuckDB's 32 MiB CSV buffers do not fit a cap of tens of megabytes: the buffer follows
    the cap, and a file of about 60 MB ingests whole under a 64 MB cap."""
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(
        '[source]\nid_column="meter_id"\ntime_column="timestamp"\nvalue_column="kwh"\n'
        '[series]\nfrequency="1h"\nhorizon=1\n[ingest]\nmemory_limit="64MB"\n'
    )
    path = tmp_path / "big.csv"
    duckdb.sql(
        "COPY (SELECT 'm' || (i % 1000) AS meter_id, "
        "strftime(TIMESTAMP '2024-01-01' + INTERVAL (i // 1000) HOUR, '%Y-%m-%d %H:%M') AS timestamp, "
        f"random() AS kwh FROM range(1600000) t(i)) TO '{path}' (HEADER)"
    )
    assert path.stat().st_size > 55e6
    [b] = ingest(ws, "meters", [path])
    assert (b.rows_read, b.rows_stored, b.rows_quarantined) == (1_600_000, 1_600_000, 0)
