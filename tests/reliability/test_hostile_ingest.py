"""hostile-ingest: inputs built to break ingest, and what must happen to them.

- A time no forecast can hold (year 1, 1677, 2263, 9999) is quarantined as ``time_out_of_range``,
  in CSV and Parquet, naive, with an offset, in a zone, with a ``time_format``; a workspace that
  already holds such a row (stored by an older version) still runs, leaving the row out.
- One line too long to be a row is quarantined alone (``line_too_long``, its own line number) and
  the rest of the file is stored; millions of blank lines lose nothing.
- Junk is refused from its first bytes: a gzip of a gigabyte of zeros in well under a second.
- ``raw`` is the line exactly as it is in the file, so grepping the file for it finds that line.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from steadycast.errors import InputFileError
from steadycast.ingestion.batch import ingest_file, quarantined
from steadycast.storage import store
from steadycast.workspace import Workspace
from tests.conftest import run_cli
from tests.reliability.conftest import Record

COLUMNS = '[source]\nid_column="meter_id"\ntime_column="timestamp"\nvalue_column="kwh"\n'
SERIES = '[series]\nfrequency="1h"\nhorizon=24\n'
OUT_OF_RANGE = ["0001-01-01 00:00:00", "1677-09-21 00:00:00", "2263-01-01 00:00:00"]
OUT_OF_RANGE += ["9999-12-31 23:00:00"]


def pipeline(ws: Workspace, name: str, extra: str = "", series: str = SERIES) -> str:
    (ws.pipelines_dir / f"{name}.toml").write_text(
        COLUMNS + extra + series + '[models]\ncandidates=["SeasonalNaive"]\n'
    )
    return name


def good_lines(hours: int, uid: str = "a", start: int = 0) -> list[str]:
    first = pd.Timestamp("2024-01-01")
    return [
        f"{uid},{first + pd.Timedelta(hours=h):%Y-%m-%d %H:%M:%S},{h % 24 + 1}"
        for h in range(start, start + hours)
    ]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("meter_id,timestamp,kwh\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def stored_times(ws: Workspace, name: str) -> list[pd.Timestamp]:
    with store.reading(ws.store_path) as con:
        rows = con.execute("SELECT ds FROM observations WHERE pipeline = ?", [name]).fetchall()
    return [pd.Timestamp(r[0]) for r in rows]


@pytest.mark.parametrize(
    ("extra", "times"),
    [
        ("", OUT_OF_RANGE),
        ('timezone="Europe/Berlin"\n', OUT_OF_RANGE),
        ("", ["0001-01-01T00:00:00Z", "9999-12-31T23:00:00+01:00"]),
        ('timezone="America/Chicago"\n', ["0001-01-01T00:00:00Z", "2263-01-01T00:00:00-05:00"]),
        ('time_format="%d/%m/%Y %H:%M"\n', ["01/01/0001 00:00", "31/12/9999 23:00"]),
        (
            'timezone="Europe/Berlin"\ntime_format="%Y-%m-%d %H:%M:%S%z"\n',
            ["0001-01-01 00:00:00+0000", "9999-12-31 23:00:00+0100"],
        ),
    ],
    ids=["naive-utc", "naive-zone", "offset-utc", "offset-zone", "time-format", "format-offset"],
)
def test_times_out_of_range_are_quarantined_in_csv(
    workspace: Workspace, tmp_path: Path, extra: str, times: list[str]
) -> None:
    name = pipeline(workspace, "p", extra)
    good = good_lines(48)
    first = pd.Timestamp("2024-01-01")
    if "%d/%m/%Y" in extra:
        good = [f"a,{first + pd.Timedelta(hours=h):%d/%m/%Y %H:%M},1" for h in range(48)]
    if "%z" in extra:
        good = [f"a,{first + pd.Timedelta(hours=h):%Y-%m-%d %H:%M:%S}+0000,1" for h in range(48)]
    bad = [f"a,{t},1" for t in times]
    path = write(tmp_path / "times.csv", good + bad)

    batch = ingest_file(workspace, workspace.pipeline(name), path)

    assert batch.quarantine_reasons == {"time_out_of_range": len(bad)}, batch
    assert batch.rows_stored == len(good)
    found = quarantined(workspace, name)
    assert sorted(q["line"] for q in found) == list(range(len(good) + 2, len(good) + 2 + len(bad)))
    assert all("1700-01-01 to 2199-12-31" in q["detail"] for q in found), found
    assert all(
        pd.Timestamp("1700") <= t < pd.Timestamp("2200") for t in stored_times(workspace, name)
    )


@pytest.mark.parametrize("kind", ["timestamp-us", "timestamp-ms", "timestamp-zone", "date32"])
def test_times_out_of_range_are_quarantined_in_parquet(
    workspace: Workspace, tmp_path: Path, kind: str
) -> None:
    daily = kind == "date32"
    name = pipeline(
        workspace, "p", series='[series]\nfrequency="1D"\nhorizon=7\n' if daily else SERIES
    )
    step = pd.Timedelta(days=1 if daily else 0, hours=0 if daily else 1)
    good = [pd.Timestamp("2024-01-01") + i * step for i in range(48)]
    bad = [pd.Timestamp(t).to_pydatetime() for t in ("1677-09-21", "2263-01-01")]
    bad = [pd.Timestamp("1677-09-21").to_pydatetime().replace(year=1), *bad]
    bad.append(pd.Timestamp("2262-01-01").to_pydatetime().replace(year=9999))
    values = [t.to_pydatetime() for t in good] + bad
    arrow_type = {
        "timestamp-us": pa.timestamp("us"),
        "timestamp-ms": pa.timestamp("ms"),
        "timestamp-zone": pa.timestamp("us", tz="Europe/Berlin"),
        "date32": pa.date32(),
    }[kind]
    column = pa.array([v.date() for v in values] if daily else values, arrow_type)
    table = pa.table(
        {"meter_id": ["a"] * len(values), "timestamp": column, "kwh": [1.0] * len(values)}
    )
    path = tmp_path / "times.parquet"
    pq.write_table(table, path)

    batch = ingest_file(workspace, workspace.pipeline(name), path)

    assert batch.quarantine_reasons == {"time_out_of_range": 4}, batch
    assert batch.rows_stored == 48
    assert all(
        pd.Timestamp("1700") <= t < pd.Timestamp("2200") for t in stored_times(workspace, name)
    )


def test_a_workspace_holding_times_out_of_range_still_runs(
    workspace: Workspace, tmp_path: Path, figure: Record
) -> None:
    """Rows stored by an older version (before the range check) are left out of the run, and
    the run says so; it does not fail with a traceback."""
    name = pipeline(workspace, "p")
    path = write(tmp_path / "good.csv", good_lines(24 * 14))
    done = run_cli("ingest", name, str(path), "-w", str(workspace.root))
    assert done.returncode == 0, done.stderr
    # What an older version stored: the rows went in as they were read.
    with store.writing(workspace.store_path) as con:
        batch_no = con.execute("SELECT max(batch_no) FROM batches").fetchone()[0]
        for ds in ("0001-01-01", "9999-12-31 23:00:00"):
            con.execute(
                "INSERT INTO observations VALUES (?, 'a', CAST(? AS TIMESTAMP), 1.0, ?)",
                [name, ds, batch_no],
            )

    run = run_cli("run", name, "-w", str(workspace.root))
    runs = json.loads(run_cli("runs", name, "-w", str(workspace.root), "--json").stdout)["runs"]
    snapshot = next(s for s in runs[0]["stages"] if s["name"] == "snapshot")
    figure(
        "hostile-ingest",
        violations=int(run.returncode != 0) + int("Traceback" in run.stderr),
        value=f"run on a workspace with 2 rows out of range: exit {run.returncode}",
    )
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.returncode == 0, run.stderr[-2000:]
    assert runs[0]["status"] == "published"
    assert snapshot["rows_rejected"] == 2
    assert "outside 1700-01-01 to 2199-12-31" in run.stderr


def test_a_line_too_long_is_quarantined_alone(
    workspace: Workspace, tmp_path: Path, figure: Record
) -> None:
    name = pipeline(workspace, "p")
    lines = [
        *good_lines(100),
        "x" * 2_000_000 + ",2024-01-01 00:00:00,1",
        *good_lines(99, start=100),
    ]
    lines.append("a,2024-02-01 00:00:00,abc")  # a bad row after the long line keeps its number
    path = write(tmp_path / "long.csv", lines)
    zipped = tmp_path / "long.csv.gz"
    zipped.write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
    other = pipeline(workspace, "gz")

    results = [
        ingest_file(workspace, workspace.pipeline(n), f) for n, f in ((name, path), (other, zipped))
    ]

    for n, batch in zip((name, other), results, strict=True):
        assert batch.status == "ingested"
        assert batch.rows_read == len(lines)
        assert batch.quarantine_reasons == {"line_too_long": 1, "not_a_number": 1}, batch
        assert batch.rows_stored == 199
        found = {q["reason"]: q for q in quarantined(workspace, n)}
        assert found["line_too_long"]["line"] == 102
        assert found["line_too_long"]["raw"] == "x" * 200
        assert "2,000,023 bytes" in found["line_too_long"]["detail"]
        assert found["not_a_number"]["line"] == len(lines) + 1
        assert found["not_a_number"]["raw"] == lines[-1]
    figure(
        "hostile-ingest",
        violations=sum(b.rows_stored != 199 for b in results),
        value="a 2,000,000-character line: quarantined alone, the other 199 rows stored",
    )


def test_millions_of_blank_lines_lose_no_row(workspace: Workspace, tmp_path: Path) -> None:
    name = pipeline(workspace, "p")
    path = tmp_path / "blank.csv"
    with path.open("w") as out:
        out.write("meter_id,timestamp,kwh\n" + "\n".join(good_lines(100)) + "\n")
        out.write("\n" * 3_000_000)
        out.write("\n".join(good_lines(99, start=100)) + "\na,2024-02-01 00:00:00,abc\n")

    done = run_cli("ingest", name, str(path), "-w", str(workspace.root), "--json")

    assert done.returncode == 0, done.stderr
    [batch] = json.loads(done.stdout)["batches"]
    assert (batch["rows_read"], batch["rows_stored"]) == (200, 199)
    [bad] = quarantined(workspace, name)
    assert bad["raw"] == "a,2024-02-01 00:00:00,abc"
    assert bad["line"] == 1 + 100 + 3_000_000 + 99 + 1


def gzip_of_zeros(path: Path, gigabytes: int) -> Path:
    """A gzip that decompresses to ``gigabytes`` of NUL bytes: one member of 64 MiB of zeros,
    repeated (a gzip file may hold several members, read one after the other)."""
    member = gzip.compress(b"\x00" * (64 << 20), compresslevel=1)
    with path.open("wb") as out:
        for _ in range(gigabytes * 16):
            out.write(member)
    return path


def test_junk_is_refused_from_its_first_bytes(
    workspace: Workspace, tmp_path: Path, figure: Record
) -> None:
    name = pipeline(workspace, "p")
    path = gzip_of_zeros(tmp_path / "zeros.csv.gz", 1)
    started = time.monotonic()
    with pytest.raises(
        InputFileError, match=r"zeros\.csv\.gz: binary data \(a NUL byte on line 1\)"
    ):
        ingest_file(workspace, workspace.pipeline(name), path)
    took = time.monotonic() - started
    figure(
        "hostile-ingest",
        violations=int(took > 1.0),
        value=f"gzip of 1 GB of zeros refused in {took:.2f} s",
    )
    assert took < 1.0

    done = run_cli("ingest", name, str(path), "-w", str(workspace.root))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "zeros.csv.gz" in done.stderr and "Traceback" not in done.stderr


RAW = [
    "b,2024-01-01T12:00:00+01:00,NaN",  # non_finite, with an offset
    "b,2024-01-01 13:17:00,1",  # misaligned, a whole number
    '"c",2024-01-01 14:00:00,"1e400"',  # quoted fields
    "d,2024-01-01 15:00:00,  7abc  ",  # spaces kept
    "e,2024-01-01 16:00:00,1.50",  # a copy of a stored row (see below)
    "f,2024-01-01 17:00:00+05:30,-inf",
    "a,2024-01-01 00:00:00,1,extra",  # wrong field count (DuckDB rejects it)
    "g,2024-01-01 18:00:00,\N{REPLACEMENT CHARACTER}",
]


@pytest.mark.parametrize("blank_lines", [False, True], ids=["plain", "with-blank-lines"])
def test_raw_is_the_line_as_it_is_in_the_file(
    workspace: Workspace, tmp_path: Path, blank_lines: bool
) -> None:
    name = pipeline(workspace, "p")
    lines: list[str] = []
    for i, bad in enumerate(RAW):
        lines += good_lines(30, uid=f"s{i}")
        lines += [bad] if bad.startswith("e,") else []  # stored; the next copy is quarantined
        lines += ["", ""] if blank_lines else []
        lines.append(bad)
    path = write(tmp_path / "raw.csv", lines)

    batch = ingest_file(workspace, workspace.pipeline(name), path)

    file_lines = path.read_text(encoding="utf-8").split("\n")
    found = quarantined(workspace, name)
    assert batch.rows_quarantined == len(RAW) == len(found), batch
    for q in found:
        assert file_lines[q["line"] - 1] == q["raw"], q
    assert sorted(q["raw"] for q in found) == sorted(RAW)


def test_raw_of_a_parquet_row_is_its_fields_as_the_file_holds_them(
    workspace: Workspace, tmp_path: Path
) -> None:
    name = pipeline(workspace, "p")
    times = [f"2024-01-01T{h:02d}:00:00+01:00" for h in range(24)]
    values = ["1"] * 23 + ["NaN"]
    frame = pd.DataFrame({"meter_id": "a", "timestamp": times, "kwh": values})
    path = tmp_path / "raw.parquet"
    frame.to_parquet(path, index=False)

    ingest_file(workspace, workspace.pipeline(name), path)

    [q] = quarantined(workspace, name)
    assert (q["line"], q["raw"]) == (24, "a,2024-01-01T23:00:00+01:00,NaN")
