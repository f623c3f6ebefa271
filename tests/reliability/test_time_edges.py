"""time-edges: daylight-saving gaps and overlaps, leap days, mixed naive and aware timestamps,
epoch numbers; then a forecast across a daylight-saving change.

The promise: times are stored in UTC (sub-daily) or as the local date (daily and longer); no
hour is lost or doubled; a time that cannot be placed is quarantined with a reason, never
shifted silently; forecast timestamps are strictly increasing on the pipeline's grid.
Every expected instant is computed here independently (pandas and zoneinfo), not by ingest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from steadycast.ingestion.batch import ingest_file, quarantined
from steadycast.storage import store
from steadycast.workspace import Workspace
from tests.conftest import run_cli
from tests.reliability.conftest import LONG, Record

# (zone, first hour in UTC, hours): a year that holds both of the zone's changes.
DST_YEARS = [
    ("Europe/London", "2024-01-01", 366 * 24),
    ("Australia/Sydney", "2024-01-01", 366 * 24),
    ("America/Sao_Paulo", "2018-07-01", 365 * 24),  # Brazil dropped daylight saving in 2019
]


def pipeline_text(timezone: str, frequency: str = "1h", horizon: int = 48) -> str:
    season = 24 if pd.Timedelta(frequency) < pd.Timedelta("1D") else 7
    return (
        '[source]\nid_column="meter_id"\ntime_column="timestamp"\nvalue_column="kwh"\n'
        f'timezone="{timezone}"\n'
        f'[series]\nfrequency="{frequency}"\nhorizon={horizon}\nseason_lengths=[{season}]\n'
        '[models]\ncandidates=["Naive", "SeasonalNaive"]\n[forecast]\nworkers=1\n'
    )


def write_csv(path: Path, rows: list[tuple[str, str, float]]) -> Path:
    lines = ["meter_id,timestamp,kwh", *(f"{u},{t},{y!r}" for u, t, y in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def stored(ws: Workspace, pipeline: str) -> dict[tuple[str, pd.Timestamp], float]:
    with store.reading(ws.store_path) as con:
        rows = con.execute(
            "SELECT unique_id, ds, y FROM observations WHERE pipeline = ?", [pipeline]
        ).fetchall()
    return {(u, pd.Timestamp(ds)): y for u, ds, y in rows}


@dataclass
class Tally:
    """Mismatches found, by kind, with a few examples each."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # unusual spellings quarantined: allowed

    def add(self, kind: str, example: str, n: int = 1) -> None:
        if n:
            self.counts[kind] = self.counts.get(kind, 0) + n
            if len(self.examples) < 12:
                self.examples.append(f"{kind}: {example}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def check_dst_year(ws: Workspace, tmp: Path, zone: str, start: str, hours: int, t: Tally) -> int:
    """A meter that writes its local wall-clock time every hour for a year: every UTC hour is
    stored once with its own value; a local time in the spring gap, or a repeated local time
    reported once, is quarantined with its reason. Returns the rows checked."""
    name = zone.replace("/", "_").lower()
    (ws.pipelines_dir / f"{name}.toml").write_text(pipeline_text(zone))
    instants = pd.date_range(start, periods=hours, freq="1h", tz="UTC")
    local = instants.tz_convert(zone).tz_localize(None)
    rows = [("meter", ts.strftime("%Y-%m-%d %H:%M"), float(i)) for i, ts in enumerate(local)]
    # Local times the zone skipped (spring forward) and repeated (fall back) this year.
    every_local = pd.date_range(local.min(), local.max(), freq="1h")
    gaps = every_local.difference(local)
    repeated = local[local.duplicated()]
    assert len(gaps) == 1 and len(repeated) == 1, (zone, gaps, repeated)  # a DST zone
    rows.append(("gap", gaps[0].strftime("%Y-%m-%d %H:%M"), 1.0))
    rows.append(("once", repeated[0].strftime("%Y-%m-%d %H:%M"), 1.0))
    batch = ingest_file(ws, ws.pipeline(name), write_csv(tmp / f"{name}.csv", rows))

    got = stored(ws, name)
    want = {("meter", ts.tz_localize(None)): float(i) for i, ts in enumerate(instants)}
    lost = [k for k in want if k not in got]
    wrong = [k for k in want if k in got and got[k] != want[k]]
    extra = [k for k in got if k not in want]
    t.add("hour lost", f"{zone} {lost[:3]}", len(lost))
    t.add("value on the wrong hour", f"{zone} {wrong[:3]}", len(wrong))
    t.add("hour invented or doubled", f"{zone} {extra[:3]}", len(extra))
    reasons = {q["unique_id"]: q["reason"] for q in quarantined(ws, name)}
    if reasons != {"gap": "nonexistent_local_time", "once": "ambiguous_local_time"}:
        t.add("gap or overlap not quarantined", f"{zone}: {reasons}")
    if batch.rows_read != batch.rows_stored + batch.rows_quarantined or batch.rows_read != len(
        rows
    ):
        t.add("parity", f"{zone}: {batch}")
    return len(rows)


@dataclass(frozen=True)
class Case:
    """One timestamp as a file may write it, and where it must land (None: quarantined)."""

    text: str
    ds: pd.Timestamp | None
    may_refuse: bool = False  # an unusual spelling: quarantined with a reason is fine too


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC").tz_localize(None)


def epoch_s(text: str) -> str:
    return str(int(pd.Timestamp(text, tz="UTC").timestamp()))


# A London hourly pipeline. Naive times are London wall-clock; aware ones and epoch numbers are
# instants. Each case lands on its own UTC hour so none collides with another.
MIXED = [
    Case("2024-07-01 12:00", utc("2024-07-01 11:00")),  # naive, BST
    Case("2024-01-15 12:00", utc("2024-01-15 12:00")),  # naive, GMT
    Case("2024-07-01T14:00:00Z", utc("2024-07-01 14:00")),
    Case("2024-07-01T17:00:00+02:00", utc("2024-07-01 15:00")),
    Case("2024-07-01T13:00:00-03:00", utc("2024-07-01 16:00")),
    Case("2024-07-01 18:00:00+0100", utc("2024-07-01 17:00")),
    Case("2024-07-01T18:00:00.000Z", utc("2024-07-01 18:00")),
    Case("2024-07-01T19:00:00z", utc("2024-07-01 19:00"), may_refuse=True),
    Case("2024-07-01 21:00 +01:00", utc("2024-07-01 20:00"), may_refuse=True),
    Case(epoch_s("2024-07-01 21:00"), utc("2024-07-01 21:00")),  # epoch seconds
    Case(epoch_s("2024-07-01 22:00") + "000", utc("2024-07-01 22:00")),  # epoch milliseconds
    Case(epoch_s("2024-07-01 23:00") + ".0", utc("2024-07-01 23:00")),  # epoch, fractional
    Case(f" {epoch_s('2024-07-02 00:00')} ", utc("2024-07-02 00:00"), may_refuse=True),
    # The repeated hour of the October change, written as instants: both are placeable.
    Case("2024-10-27T01:30:00+01:00", None),  # 00:30 UTC: off the hourly grid
    Case("2024-10-27T01:00:00+01:00", utc("2024-10-27 00:00")),
    Case("2024-10-27T01:00:00+00:00", utc("2024-10-27 01:00")),
    Case(epoch_s("2024-10-27 02:00"), utc("2024-10-27 02:00")),
    # The spring gap as an instant exists (01:00 UTC is 02:00 BST).
    Case("2024-03-31T01:00:00Z", utc("2024-03-31 01:00")),
    # Leap days.
    Case("2024-02-29 23:00", utc("2024-02-29 23:00")),
    Case("2000-02-29 00:00", utc("2000-02-29 00:00")),
    Case("2023-02-29 00:00", None),
    Case("2100-02-29 00:00", None),
    Case("2024-02-30 00:00", None),
]

# A London daily pipeline: a day is the local date, never shifted to UTC.
DAILY = [
    Case("2024-02-28", pd.Timestamp("2024-02-28")),
    Case("2024-02-29", pd.Timestamp("2024-02-29")),
    Case("2024-03-01", pd.Timestamp("2024-03-01")),
    Case("2024-03-31", pd.Timestamp("2024-03-31")),  # the day of the spring change
    Case("2024-10-27", pd.Timestamp("2024-10-27")),  # the day of the autumn change
    Case("2023-02-29", None),
    Case("2024-04-01T00:00:00+01:00", pd.Timestamp("2024-04-01")),  # local midnight, aware
    Case(epoch_s("2024-04-01 23:00"), pd.Timestamp("2024-04-02")),  # BST midnight as epoch
    Case(epoch_s("2024-12-01 00:00"), pd.Timestamp("2024-12-01")),  # GMT midnight as epoch
    Case("2024-04-03T00:00:00Z", None),  # 01:00 local: not a day boundary
]


def check_cases(
    ws: Workspace, tmp: Path, name: str, zone: str, frequency: str, cases: list[Case], t: Tally
) -> None:
    (ws.pipelines_dir / f"{name}.toml").write_text(pipeline_text(zone, frequency))
    rows = [(f"s{i:02d}", c.text, float(i)) for i, c in enumerate(cases)]
    batch = ingest_file(ws, ws.pipeline(name), write_csv(tmp / f"{name}.csv", rows))
    got = {uid: ds for (uid, ds) in stored(ws, name)}
    reasons = {q["unique_id"]: q["reason"] for q in quarantined(ws, name)}
    for i, c in enumerate(cases):
        uid = f"s{i:02d}"
        if uid in got:
            if c.ds is None or got[uid] != c.ds:
                t.add("placed on the wrong time", f"{name} {c.text!r} -> {got[uid]}, want {c.ds}")
        elif uid in reasons:
            if c.ds is not None and not c.may_refuse:
                t.add("refused", f"{name} {c.text!r} quarantined as {reasons[uid]}")
            elif c.ds is not None:
                t.refused.append(f"{c.text!r}: {reasons[uid]}")
        else:
            t.add("lost", f"{name} {c.text!r} neither stored nor quarantined")
    if batch.rows_read != batch.rows_stored + batch.rows_quarantined:
        t.add("parity", f"{name}: {batch}")


def check_parquet_types(ws: Workspace, tmp: Path, t: Tally) -> None:
    """Typed Parquet time columns: aware, naive local, epoch integers, dates."""
    (ws.pipelines_dir / "typed.toml").write_text(pipeline_text("Europe/London"))
    (ws.pipelines_dir / "typed_daily.toml").write_text(pipeline_text("Europe/London", "1D"))
    # The four hours around the October change, in UTC.
    instants = pd.date_range("2024-10-26 23:00", periods=4, freq="1h", tz="UTC")
    want = list(instants.tz_localize(None))
    columns = {
        "aware": instants.tz_convert("Europe/London"),
        "naive local": instants.tz_convert("Europe/London").tz_localize(None),
        "epoch s": instants.as_unit("s").asi8,
        "epoch ms": instants.as_unit("ms").asi8,
    }
    for label, column in columns.items():
        path = tmp / f"typed-{label.replace(' ', '-')}.parquet"
        uid = label.replace(" ", "_")
        pd.DataFrame(
            {"meter_id": uid, "timestamp": column, "kwh": [1.0, 2.0, 3.0, 4.0]}
        ).to_parquet(path)
        ingest_file(ws, ws.pipeline("typed"), path)
        got = sorted(((ds, y) for (u, ds), y in stored(ws, "typed").items() if u == uid))
        if got != list(zip(want, [1.0, 2.0, 3.0, 4.0], strict=True)):
            t.add("placed on the wrong time", f"parquet {label}: {got}")
    days = pd.to_datetime(["2024-02-28", "2024-02-29", "2024-03-01"]).date
    path = tmp / "typed-dates.parquet"
    pd.DataFrame({"meter_id": "d", "timestamp": days, "kwh": [1.0, 2.0, 3.0]}).to_parquet(path)
    ingest_file(ws, ws.pipeline("typed_daily"), path)
    got_days = sorted(ds for (u, ds) in stored(ws, "typed_daily"))
    if got_days != [pd.Timestamp(d) for d in days]:
        t.add("placed on the wrong time", f"parquet dates: {got_days}")


def test_times_are_stored_in_utc_with_no_hour_lost_or_doubled(
    workspace: Workspace, tmp_path: Path, figure: Record
) -> None:
    t = Tally()
    rows = 0
    for zone, start, hours in DST_YEARS:
        rows += check_dst_year(workspace, tmp_path, zone, start, hours, t)
    check_cases(workspace, tmp_path, "mixed", "Europe/London", "1h", MIXED, t)
    check_cases(workspace, tmp_path, "daily", "Europe/London", "1D", DAILY, t)
    check_parquet_types(workspace, tmp_path, t)
    rows += len(MIXED) + len(DAILY) + 4 * 4 + 3
    figure(
        "time-edges",
        violations=t.total,
        value=(
            f"{t.total} mismatches over {rows:,} timestamps (a year of hours in "
            f"{len(DST_YEARS)} zones, mixed naive/aware/epoch, leap days, typed Parquet)"
        ),
        mismatches=t.counts,
        examples=t.examples,
        refused_with_a_reason=t.refused,
    )
    assert t.total == 0, t.examples


# Forecasts whose horizon crosses a daylight-saving change. The quick run makes one; the
# long run all of them. (pipeline zone, frequency, history end in UTC (exclusive), days)
FORECASTS = [
    ("Europe/London", "1h", "2024-10-26 12:00", 14),  # 48 h ahead: across the October change
    ("America/Sao_Paulo", "1h", "2018-11-03 06:00", 14),  # across the midnight gap
    ("Australia/Sydney", "1h", "2024-04-06 06:00", 14),
    ("Europe/London", "1D", "2024-03-25 00:00", 60),  # daily, across the March change
]


@pytest.mark.parametrize(
    "zone, frequency, end, days", FORECASTS if LONG else FORECASTS[:1], ids=lambda v: str(v)
)
def test_forecast_timestamps_are_strictly_increasing_across_a_change(
    workspace: Workspace,
    tmp_path: Path,
    figure: Record,
    zone: str,
    frequency: str,
    end: str,
    days: int,
) -> None:
    step = pd.Timedelta(frequency)
    horizon = 48 if step < pd.Timedelta("1D") else 14
    (workspace.pipelines_dir / "edge.toml").write_text(pipeline_text(zone, frequency, horizon))
    if step < pd.Timedelta("1D"):
        instants = pd.date_range(
            end=pd.Timestamp(end, tz="UTC") - step, periods=days * 24, freq=step
        )
        local = instants.tz_convert(zone).tz_localize(None)
        last = instants[-1].tz_localize(None)
    else:
        local = pd.date_range(end=pd.Timestamp(end) - step, periods=days, freq=step)
        last = local[-1]
    rows = [
        (uid, ts.strftime("%Y-%m-%d %H:%M"), float(10 + (i % 24) + k))
        for k, uid in enumerate(["a", "b"])
        for i, ts in enumerate(local)
    ]
    ingest_file(workspace, workspace.pipeline("edge"), write_csv(tmp_path / "edge.csv", rows))
    done = run_cli("run", "edge", "-w", str(workspace.root), "--json")
    assert done.returncode == 0, (done.stdout[-500:], done.stderr[-500:])
    exported = run_cli("forecast", "edge", "-w", str(workspace.root), "--format", "json")
    assert exported.returncode == 0, exported.stderr
    forecast = pd.DataFrame(json.loads(exported.stdout)["rows"])
    t = Tally()
    for uid in ("a", "b"):
        ds = pd.to_datetime(forecast.loc[forecast["unique_id"] == uid, "ds"]).dt.tz_localize(None)
        want = pd.date_range(last + step, periods=horizon, freq=step)
        steps = ds.diff().dropna()
        t.add(
            "not strictly increasing",
            f"{uid}: {list(ds)[:5]}",
            int((steps <= pd.Timedelta(0)).sum()),
        )
        t.add("off the grid step", f"{uid}: {sorted(set(steps))}", int((steps != step).sum()))
        if list(ds) != list(want):
            t.add("not the next horizon steps", f"{uid}: {list(ds)[:3]} want {list(want)[:3]}")
    figure(
        "time-edges",
        violations=t.total,
        value=f"forecast across the change ({zone}, {frequency}): {t.total} mismatches",
        mismatches=t.counts,
        examples=t.examples,
    )
    assert t.total == 0, t.examples
