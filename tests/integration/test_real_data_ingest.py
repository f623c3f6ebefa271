"""The real datasets beside the repository ingest with parity (rows read = stored + quarantined)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from steadycast.ingestion.batch import ingest
from steadycast.storage import store
from steadycast.workspace import Workspace
from tests.conftest import shared_data


def pipeline(
    ws: Workspace,
    name: str,
    id_col: str,
    time_col: str,
    value_col: str,
    freq: str,
    timezone: str = "UTC",
    time_format: str = "",
) -> str:
    (ws.pipelines_dir / f"{name}.toml").write_text(
        f'[source]\nid_column="{id_col}"\ntime_column="{time_col}"\nvalue_column="{value_col}"\n'
        f'timezone="{timezone}"\ntime_format="{time_format}"\n'
        f'[series]\nfrequency="{freq}"\nhorizon=7\nmin_value=0\n'
    )
    return name


def stored_count(ws: Workspace, name: str) -> int:
    with store.reading(ws.store_path) as con:
        row = con.execute("SELECT count(*) FROM observations WHERE pipeline = ?", [name]).fetchone()
    return int(row[0]) if row else 0


def gefcom_long(tmp_path: Path) -> tuple[Path, int]:
    """GEFCom2012 load history (wide, hour-ending columns) as long CSV; empty cells kept."""
    wide = pd.read_csv(shared_data("gefcom2012_load", "Load_history.csv.gz"), dtype=str)
    hours = [f"h{h}" for h in range(1, 25)]
    long = wide.melt(
        id_vars=["zone_id", "year", "month", "day"],
        value_vars=hours,
        var_name="h",
        value_name="load",
    )
    start = pd.to_datetime(long[["year", "month", "day"]].astype(int))
    long["ts"] = (start + pd.to_timedelta(long["h"].str[1:].astype(int) - 1, unit="h")).dt.strftime(
        "%Y-%m-%d %H:%M"
    )
    long["load"] = long["load"].str.replace(",", "", regex=False)
    out = tmp_path / "gefcom_long.csv"
    long[["zone_id", "ts", "load"]].to_csv(out, index=False)
    return out, int(long["load"].isna().sum())


def cta_long(tmp_path: Path) -> tuple[Path, int, int]:
    wide = pd.read_csv(
        shared_data("cta_ridership_daily", "CTA_-_Ridership_-_Daily_Boarding_Totals_20240528.csv"),
        dtype=str,
    )
    exact_dupes = int(wide.duplicated().sum())
    long = wide.melt(
        id_vars=["service_date"],
        value_vars=["bus", "rail_boardings", "total_rides"],
        var_name="series",
        value_name="boardings",
    )
    out = tmp_path / "cta_long.csv"
    long.to_csv(out, index=False)
    return out, len(long), exact_dupes


def test_sgsc_smart_meters_as_they_are(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    pipeline(
        ws,
        "sgsc",
        "customer_id",
        "reading_datetime",
        "general_supply_kwh",
        "30min",
        timezone="Australia/Sydney",
    )
    [b] = ingest(ws, "sgsc", [shared_data("sgsc_smart_meter_50", "sm_cust50.csv.gz")])
    assert b.rows_read == 1_330_409
    assert b.rows_stored + b.rows_quarantined == b.rows_read
    assert stored_count(ws, "sgsc") == b.rows_stored
    # The sample's own fix for the autumn repeat (second copy shifted +1 h) leaves some local
    # times that cannot be placed; nothing else in it is bad.
    assert set(b.quarantine_reasons) <= {
        "ambiguous_local_time",
        "nonexistent_local_time",
        "duplicate",
        "conflicting_duplicate",
    }
    assert b.rows_quarantined < 0.001 * b.rows_read


def test_gefcom_zones_with_their_backcast_gaps(tmp_path: Path) -> None:
    path, empty = gefcom_long(tmp_path)
    ws = Workspace.init(tmp_path / "ws")
    pipeline(ws, "gefcom", "zone_id", "ts", "load", "1h")
    [b] = ingest(ws, "gefcom", [path])
    assert b.rows_read == 33_000 * 24
    assert b.quarantine_reasons == {"missing_value": empty}
    assert stored_count(ws, "gefcom") == b.rows_read - empty


def test_cta_duplicates_stored_once_extra_copies_quarantined(tmp_path: Path) -> None:
    path, rows, exact_dupes = cta_long(tmp_path)
    assert exact_dupes == 62
    ws = Workspace.init(tmp_path / "ws")
    pipeline(ws, "cta", "series", "service_date", "boardings", "1D", timezone="America/Chicago")
    [b] = ingest(ws, "cta", [path])
    assert b.rows_read == rows
    assert b.quarantine_reasons == {"duplicate": exact_dupes * 3}
    assert stored_count(ws, "cta") == 8_460 * 3
    with store.reading(ws.store_path) as con:
        first, last = con.execute(
            "SELECT min(ds), max(ds) FROM observations WHERE unique_id = 'bus'"
        ).fetchone()
    # Daily series keep their calendar dates (not shifted by the Chicago offset).
    assert (first, last) == (
        pd.Timestamp("2001-01-01").to_pydatetime(),
        pd.Timestamp("2024-02-29").to_pydatetime(),
    )
