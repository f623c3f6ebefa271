"""malformed-rows: a file of bad rows of every kind, next to good ones with awkward ids.

Bad dates, NaN and infinities, text, 1e308, empty, unicode and SQL-looking ids, duplicates,
rows with the wrong number of fields. Each generated row knows what must happen to it: stored
(with exactly its id, UTC time and value) or quarantined with a given reason on a given line.
The promise: stored + quarantined = read = rows written; every quarantined row has a reason
code; an id that looks like SQL is stored as a plain id (and the tables are all still there).
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from steadycast.ingestion import REASONS, ingest_file, quarantined
from steadycast.storage import store
from steadycast.workspace import Workspace
from tests.conftest import run_cli
from tests.reliability.conftest import Record, size

ROWS = size(2_000, 10_000, env="STEADYCAST_MALFORMED_ROWS")

PIPELINE = (
    '[source]\nid_column="meter_id"\ntime_column="timestamp"\nvalue_column="kwh"\n'
    '[series]\nfrequency="1h"\nhorizon=24\nmin_value=0\n'
)
START = pd.Timestamp("2024-01-01")
SQL = "'); DROP TABLE observations;--"

GOOD_IDS = [
    "m1",
    "Zürich",
    "東京-7",
    "😀",
    "مرحبا",
    "e\u0301",  # e + combining acute accent, not the precomposed é
    "\u200b",  # zero-width space: not blank, so an id
    "it's",
    '"quoted"',
    'a""b',
    "a,b",
    SQL,
    "Robert'); DROP TABLE batches;--",
    "1 OR 1=1",
    "%s%n{0}",
    "C:\\temp\\",
    "$(rm -rf /)",
    "x" * 1000,
]
GOOD_VALUES = {
    "0": 0.0,
    "1": 1.0,
    "2.5": 2.5,
    "1e308": 1e308,
    "1e-300": 1e-300,
    "+3": 3.0,
    ".5": 0.5,
    "5.": 5.0,
    "1E3": 1000.0,
    " 12 ": 12.0,
    "123456789.125": 123456789.125,
}
BAD_VALUES = {
    "abc": "not_a_number",
    "12abc": "not_a_number",
    "1,5": "not_a_number",
    "--1": "not_a_number",
    "1e": "not_a_number",
    "0x10": "not_a_number",
    "١٢": "not_a_number",
    "NULL": "not_a_number",
    "true": "not_a_number",
    "": "missing_value",
    "   ": "missing_value",
    "nan": "non_finite",
    "NaN": "non_finite",
    "inf": "non_finite",
    "-inf": "non_finite",
    "Infinity": "non_finite",
    "1e309": "non_finite",
    "-1": "below_min",
    "-1e308": "below_min",
}
BAD_TIMES = [
    "2024-02-30 00:00",
    "2024-13-01 00:00",
    "2023-02-29 00:00",
    "2024-01-01 25:00",
    "0000-00-00 00:00",
    "yesterday",
    "",
    "'); DROP TABLE quarantine;--",
    "２０２４-01-01 00:00",  # full-width digits
]
BLANK_IDS = ["", "   "]


@dataclass(frozen=True)
class Row:
    """One record of the file and its fate: ``reason`` None means stored as ``stored``."""

    fields: tuple[str, ...]
    reason: str | None
    stored: tuple[str, pd.Timestamp, float] | None = None
    csv_only: bool = False  # a broken CSV record has no Parquet equivalent


def hour(i: int) -> pd.Timestamp:
    return START + pd.Timedelta(hours=i)


def text(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%d %H:%M")


def rows(count: int, seed: int = 0) -> list[Row]:
    """At least ``count`` records, every kind in turn; each kind has an hour of its own, so
    rows collide only where a duplicate is meant (a pair is never cut in two)."""
    rng = random.Random(seed)
    kinds = list(KINDS.values())
    out: list[Row] = []
    for i in range(count):  # bounded: every kind yields at least one row
        if len(out) >= count:
            break
        out.extend(kinds[i % len(kinds)](rng, i))
    return out


def good(rng: random.Random, i: int) -> Iterator[Row]:
    uid = rng.choice(GOOD_IDS)
    value = rng.choice(list(GOOD_VALUES))
    yield Row((uid, text(hour(i)), value), None, (uid, hour(i), GOOD_VALUES[value]))


def bad_value(rng: random.Random, i: int) -> Iterator[Row]:
    value = rng.choice(list(BAD_VALUES))
    yield Row((rng.choice(GOOD_IDS), text(hour(i)), value), BAD_VALUES[value])


def bad_time(rng: random.Random, i: int) -> Iterator[Row]:
    # A bad time wins over a bad value: reasons are tested in order.
    value = rng.choice([*GOOD_VALUES, "abc", "nan"])
    yield Row((rng.choice(GOOD_IDS), rng.choice(BAD_TIMES), value), "unparseable_time")


def blank_id(rng: random.Random, i: int) -> Iterator[Row]:
    time = rng.choice([text(hour(i)), "yesterday"])
    yield Row((rng.choice(BLANK_IDS), time, rng.choice(["1", "nan", "abc"])), "missing_id")


def off_grid(rng: random.Random, i: int) -> Iterator[Row]:
    ts = hour(i) + pd.Timedelta(minutes=rng.randint(1, 59))
    yield Row((rng.choice(GOOD_IDS), text(ts), rng.choice(["1", "nan"])), "misaligned")


def exact_copy(rng: random.Random, i: int) -> Iterator[Row]:
    uid = rng.choice(GOOD_IDS)
    fields = (uid, text(hour(i)), "7")
    yield Row(fields, None, (uid, hour(i), 7.0))
    yield Row(fields, "duplicate")


def conflicting(rng: random.Random, i: int) -> Iterator[Row]:
    uid = rng.choice(GOOD_IDS)
    yield Row((uid, text(hour(i)), "1"), "conflicting_duplicate")
    yield Row((uid, text(hour(i)), "2"), "conflicting_duplicate")


def wrong_field_count(rng: random.Random, i: int) -> Iterator[Row]:
    # Two fields, or four and more (a record of one field has its own test below). Extra fields
    # are not empty: trailing empty fields ('a,b,c,,') are read as trailing delimiters.
    uid = rng.choice(GOOD_IDS)
    fields = rng.choice(
        [(uid, text(hour(i))), (uid, text(hour(i)), "1", "extra"), (uid, "", "", "", "x")]
    )
    yield Row(fields, "malformed_row", csv_only=True)


KINDS: dict[str, Callable[[random.Random, int], Iterator[Row]]] = {
    "good": good,
    "bad value": bad_value,
    "good 2": good,
    "bad time": bad_time,
    "blank id": blank_id,
    "good 3": good,
    "off grid": off_grid,
    "exact copy": exact_copy,
    "conflicting": conflicting,
    "wrong field count": wrong_field_count,
}


def write_csv(path: Path, records: list[Row]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["meter_id", "timestamp", "kwh"])
    for r in records:
        writer.writerow(r.fields)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def write_parquet(path: Path, records: list[Row]) -> Path:
    frame = pd.DataFrame([r.fields for r in records], columns=["meter_id", "timestamp", "kwh"])
    frame.to_parquet(path, index=False)
    return path


@dataclass
class Accounting:
    difference: int
    detail: dict[str, object]


def account(
    ws: Workspace, pipeline: str, records: list[Row], batch: dict, header: int
) -> Accounting:
    """Compare what the store holds with what each record must have become."""
    expected_reasons = Counter(r.reason for r in records if r.reason)
    expected_stored = {r.stored for r in records if r.stored}
    with store.reading(ws.store_path) as con:
        got = con.execute(
            "SELECT unique_id, ds, y FROM observations WHERE pipeline = ?", [pipeline]
        ).fetchall()
        tables = {t[0] for t in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    stored = {(uid, pd.Timestamp(ds), y) for uid, ds, y in got}
    lines = {q["line"]: q for q in quarantined(ws, pipeline)}
    wrong_lines = []
    for index, r in enumerate(records):
        line = index + 1 + header
        found = lines.get(line)
        if r.reason is None and found is not None:
            wrong_lines.append(f"line {line}: stored row quarantined as {found['reason']}")
        elif r.reason is not None and (found is None or found["reason"] != r.reason):
            wrong_lines.append(f"line {line}: {r.fields!r} should be {r.reason}, got {found}")
        elif found is not None and not found["detail"]:
            wrong_lines.append(f"line {line}: quarantined without a sentence")
    reasons = Counter(batch["quarantine_reasons"])
    differences = {
        "read": abs(batch["rows_read"] - len(records)),
        "stored": abs(batch["rows_stored"] - len(expected_stored)),
        "parity": abs(batch["rows_read"] - batch["rows_stored"] - batch["rows_quarantined"]),
        "reasons": sum(
            abs(reasons[k] - expected_reasons[k]) for k in set(reasons) | set(expected_reasons)
        ),
        "unknown reasons": len(set(reasons) - set(REASONS)),
        "missing rows": len(expected_stored - stored),
        "invented rows": len(stored - expected_stored),
        "wrong lines": len(wrong_lines),
        "tables dropped": len({"observations", "quarantine", "batches"} - tables),
    }
    return Accounting(
        sum(differences.values()),
        {
            "differences": differences,
            "expected_reasons": dict(expected_reasons),
            "reasons": dict(reasons),
            "wrong_lines": wrong_lines[:5],
            "missing": [repr(x) for x in sorted(expected_stored - stored, key=repr)[:3]],
            "invented": [repr(x) for x in sorted(stored - expected_stored, key=repr)[:3]],
        },
    )


def test_malformed_rows_are_stored_or_quarantined_with_their_reason(
    workspace: Workspace, tmp_path: Path, figure: Record
) -> None:
    records = rows(ROWS)
    (workspace.pipelines_dir / "csv.toml").write_text(PIPELINE)
    (workspace.pipelines_dir / "parquet.toml").write_text(PIPELINE)
    csv_file = write_csv(tmp_path / "malformed.csv", records)
    typed = [r for r in records if not r.csv_only]
    parquet_file = write_parquet(tmp_path / "malformed.parquet", typed)

    results = {}
    for pipeline, path, these, header in (
        ("csv", csv_file, records, 1),
        ("parquet", parquet_file, typed, 0),
    ):
        done = run_cli("ingest", pipeline, str(path), "-w", str(workspace.root), "--json")
        assert done.returncode == 0, done.stderr
        [batch] = json.loads(done.stdout)["batches"]
        results[pipeline] = account(workspace, pipeline, these, batch, header)

    sql_kept = {
        pipeline: bool(store_ids(workspace, pipeline) & {SQL, "Robert'); DROP TABLE batches;--"})
        for pipeline in results
    }
    difference = sum(a.difference for a in results.values()) + sum(not k for k in sql_kept.values())
    figure(
        "malformed-rows",
        violations=difference,
        value=(
            f"accounting difference {difference} over {len(records):,} CSV and "
            f"{len(typed):,} Parquet rows ({Counter(r.reason for r in records)[None]:,} good)"
        ),
        csv=results["csv"].detail,
        parquet=results["parquet"].detail,
        sql_ids_stored=sql_kept,
    )
    assert difference == 0, {k: a.detail for k, a in results.items()}


def store_ids(ws: Workspace, pipeline: str) -> set[str]:
    with store.reading(ws.store_path) as con:
        return {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT unique_id FROM observations WHERE pipeline = ?", [pipeline]
            ).fetchall()
        }


def test_a_record_of_one_field_is_one_quarantined_row_on_its_line(
    workspace: Workspace, tmp_path: Path, figure: Record
) -> None:
    (workspace.pipelines_dir / "meters.toml").write_text(PIPELINE)
    lines = [
        "m,2024-01-01 00:00,1",
        "just text",  # line 3: one field
        "m,2024-01-01 01:00,abc",  # line 4: not_a_number
        "   ",  # line 5: one field (blank lines are skipped, spaces are not)
        "m,2024-01-01 02:00,2",
        "m,2024-01-01 03:00,nan",  # line 7: non_finite
    ]
    path = tmp_path / "one-field.csv"
    path.write_text("meter_id,timestamp,kwh\n" + "\n".join(lines) + "\n")
    batch = ingest_file(workspace, workspace.pipeline("meters"), path)
    got = sorted((q["line"], q["reason"]) for q in quarantined(workspace, "meters"))
    want = [(3, "malformed_row"), (4, "not_a_number"), (5, "malformed_row"), (7, "non_finite")]
    extra = batch.rows_read - len(lines)
    figure(
        "malformed-rows",
        violations=abs(extra) + sum(g != w for g, w in zip(got, want, strict=False)),
        value=f"records of one field: {len(lines)} rows read as {batch.rows_read}",
        quarantined=got,
    )
    assert batch.rows_read == len(lines)
    assert got == want
