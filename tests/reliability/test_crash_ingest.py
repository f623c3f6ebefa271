"""crash-ingest: SIGKILL an ingest of two files at random moments.

Whatever the moment, each batch is fully in or not in at all, every batch the command
acknowledged (its audit entry, or its line in the ``--json`` answer) is there in full, and the
re-run leaves every row stored or quarantined exactly once: read = stored + quarantined.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from steadycast.errors import SteadycastError
from steadycast.storage import control, store
from steadycast.workspace import Workspace
from tests.reliability.conftest import LONG, Record, size

ATTEMPTS = size(3, 200, env="STEADYCAST_CRASH_ATTEMPTS")
# Rows over both files. The long run kills 200 times, so its files are smaller to stay within
# about 15 minutes on 2 cores; the figure says which size ran.
ROWS = size(1_500_000, 600_000, env="STEADYCAST_CRASH_ROWS")
SERIES = 2000
BAD_EVERY = 1000  # one row in a thousand has a non-numeric value (quarantined as not_a_number)


@dataclass(frozen=True)
class Batch:
    """One input file and what ingesting it must leave in the store."""

    path: Path
    batch_id: str
    rows: int
    quarantined: int

    @property
    def stored(self) -> int:
        return self.rows - self.quarantined


@dataclass(frozen=True)
class Data:
    batches: tuple[Batch, Batch]
    duration_s: float  # a clean ingest of both files, command start to exit
    startup_s: float = 0.0  # an ingest of a one-row file: starting the command, mostly


def write_rows(path: Path, lo: int, hi: int) -> Batch:
    """Rows ``lo..hi-1`` of the fleet: series ``i % SERIES``, hour ``i // SERIES``."""
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (
            SELECT 'm' || (i % {SERIES}) AS meter_id,
                   strftime(TIMESTAMP '2024-01-01' + INTERVAL (i // {SERIES}) HOUR, '%Y-%m-%d %H:%M') AS timestamp,
                   CASE WHEN i % {BAD_EVERY} = 7 THEN 'n/a' ELSE CAST(i % 97 AS VARCHAR) END AS kwh
            FROM range({lo}, {hi}) t(i)
        ) TO '{path}' (HEADER)
        """
    )
    con.close()
    bad = len(range(lo + (7 - lo) % BAD_EVERY, hi, BAD_EVERY))
    batch_id = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return Batch(path, batch_id, hi - lo, bad)


def make_workspace(root: Path) -> Workspace:
    ws = Workspace.init(root)
    (ws.pipelines_dir / "meters.toml").write_text(
        '[source]\nid_column="meter_id"\ntime_column="timestamp"\nvalue_column="kwh"\n'
        '[series]\nfrequency="1h"\nhorizon=24\n'
    )
    return ws


def ingest_cmd(ws: Path, data: Data) -> list[str]:
    files = [str(b.path) for b in data.batches]
    return [sys.executable, "-m", "steadycast.cli", "ingest", "meters", *files, "-w", str(ws)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    """The two files, and one clean reference ingest that measures how long the command takes
    (so kills land inside it) and shows the expected counts are what ingest really does."""
    root = tmp_path_factory.mktemp("crash-ingest")
    half = ROWS // 2
    batches = (write_rows(root / "first.csv", 0, half), write_rows(root / "second.csv", half, ROWS))
    tiny = Data((write_rows(root / "tiny.csv", 0, 1), write_rows(root / "tiny2.csv", 1, 2)), 0.0)
    started = time.monotonic()
    subprocess.run(
        ingest_cmd(make_workspace(root / "tiny").root, tiny), check=True, capture_output=True
    )
    startup = time.monotonic() - started
    probe = Data(batches, 0.0)
    reference = make_workspace(root / "reference")
    started = time.monotonic()
    subprocess.run(ingest_cmd(reference.root, probe), check=True, capture_output=True)
    duration = time.monotonic() - started
    assert not _problems(reference, probe, final=True)
    return Data(batches, duration, startup)


def _problems(
    ws: Workspace, data: Data, *, final: bool, acked: set[str] | None = None
) -> list[str]:
    """What is wrong with the store after a kill (or, ``final``, after the re-run)."""
    wanted = {b.batch_id: b for b in data.batches}
    problems: list[str] = []
    try:
        with store.reading(ws.store_path) as con:
            ledger = {
                row[0]: row[1:]
                for row in con.execute(
                    "SELECT batch_id, rows_read, rows_stored, rows_quarantined FROM batches"
                ).fetchall()
            }
            # Stored rows name their batch by number; a row whose batch is not in the ledger
            # (a partial batch) shows up under its number.
            stored = dict(
                con.execute(
                    "SELECT coalesce(b.batch_id, 'number ' || o.batch_no), count(*) "
                    "FROM observations o LEFT JOIN batches b "
                    "ON b.pipeline = o.pipeline AND b.batch_no = o.batch_no GROUP BY 1"
                ).fetchall()
            )
            quarantined = dict(
                con.execute("SELECT batch_id, count(*) FROM quarantine GROUP BY 1").fetchall()
            )
            reasons = con.execute("SELECT DISTINCT reason FROM quarantine").fetchall()
            row = con.execute(
                "SELECT count(*) - count(DISTINCT (unique_id, ds)) FROM observations"
            ).fetchone()
            doubled = int(row[0]) if row else 0
    except (duckdb.Error, SteadycastError) as exc:
        return [f"the store cannot be read after the kill: {exc}"]
    for batch_id in sorted(set(stored) | set(quarantined)):
        if batch_id not in ledger:
            problems.append(f"rows of batch {batch_id} are stored, but the batch is not committed")
    for batch_id, (read, kept, put_aside) in ledger.items():
        batch = wanted.get(batch_id)
        if batch is None:
            problems.append(f"unknown batch {batch_id} in the ledger")
            continue
        if (read, kept, put_aside) != (batch.rows, batch.stored, batch.quarantined):
            problems.append(f"ledger of {batch.path.name}: {(read, kept, put_aside)}")
        if read != kept + put_aside:
            problems.append(f"ledger of {batch.path.name}: read != stored + quarantined")
        got = (stored.get(batch_id, 0), quarantined.get(batch_id, 0))
        if got != (batch.stored, batch.quarantined):
            problems.append(f"partial batch {batch.path.name}: {got} rows stored/quarantined")
    if doubled:
        problems.append(f"{doubled} observations stored twice")
    if reasons and {r[0] for r in reasons} != {"not_a_number"}:
        problems.append(f"unexpected quarantine reasons {reasons}")
    first, second = data.batches
    if second.batch_id in ledger and first.batch_id not in ledger:
        problems.append("the second file is committed but the first is not")
    for batch_id in sorted((acked or set()) - set(ledger)):
        problems.append(f"batch {batch_id} was acknowledged but is not in the store")
    if final and set(ledger) != set(wanted):
        problems.append(f"after the re-run the ledger holds {sorted(ledger)}")
    return problems


def _acknowledged(ws: Workspace, stdout: bytes) -> set[str]:
    """Batches the killed command said were done: audit entries, and its --json answer."""
    with control.connect(ws.control_path) as con:
        audited = {
            str(row["subject"])
            for row in con.execute("SELECT subject FROM audit WHERE action = 'ingest.ingested'")
        }
    try:
        answer = json.loads(stdout)
    except ValueError:
        return audited  # killed before it answered (the usual case)
    return audited | {b["batch_id"] for b in answer["batches"] if b["status"] == "ingested"}


@pytest.mark.timeout(max(600, ATTEMPTS * 30))
def test_killed_ingest_keeps_batches_whole_and_reruns_to_exactly_once(
    tmp_path: Path, data: Data, figure: Record
) -> None:
    violations: list[str] = []
    recovery: list[float] = []
    committed_at_kill = {0: 0, 1: 0, 2: 0}
    rng = random.Random(20240229)
    for attempt in range(ATTEMPTS):
        ws = make_workspace(tmp_path / f"ws{attempt}")
        # Most kills land while the files are read and stored; a few while the command starts
        # (then nothing is written yet) or after it has finished.
        low = 0.05 if attempt % 5 == 0 else min(0.8 * data.startup_s, data.duration_s)
        delay = rng.uniform(low, data.duration_s)
        proc = subprocess.Popen(
            [*ingest_cmd(ws.root, data), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        stdout, _ = proc.communicate()
        acked = _acknowledged(ws, stdout)
        found = _problems(ws, data, final=False, acked=acked)
        with store.reading(ws.store_path) as con:
            row = con.execute("SELECT count(*) FROM batches").fetchone()
        committed_at_kill[int(row[0]) if row else 0] += 1

        started = time.monotonic()
        rerun = subprocess.run(ingest_cmd(ws.root, data), capture_output=True, text=True)
        recovery.append(time.monotonic() - started)
        if rerun.returncode != 0:
            found.append(f"re-run failed ({rerun.returncode}): {rerun.stderr[-300:]}")
        found += _problems(ws, data, final=True)
        violations += [f"attempt {attempt}, killed after {delay:.2f} s: {p}" for p in found]
        # Each attempt's workspace holds a full copy of the rows; keep the disk small.
        for path in ws.root.iterdir():
            if path.is_file():
                path.unlink()

    rows = f"{ROWS:,} rows in 2 files" + ("" if LONG else " (quick)")
    figure(
        "crash-ingest",
        violations=len(violations),
        value=(
            f"{len(violations)} violations in {ATTEMPTS} kills ({rows}); re-run median "
            f"{statistics.median(recovery):.1f} s, max {max(recovery):.1f} s"
        ),
        attempts=ATTEMPTS,
        rows=ROWS,
        clean_ingest_s=round(data.duration_s, 2),
        startup_s=round(data.startup_s, 2),
        batches_committed_at_kill=committed_at_kill,
        recovery_s={
            "median": round(statistics.median(recovery), 2),
            "max": round(max(recovery), 2),
        },
        first_violations=violations[:5],
    )
    assert not violations, violations[:10]
