"""disk-full: the workspace on a small tmpfs that fills up mid-ingest and mid-publish.

The promise: the command fails with exit code 1 and one clear line naming the problem (no
traceback); nothing committed before is lost (earlier batches, the current release); and the
same command finishes once there is space again.

The tests mount tmpfs filesystems, so they need root (CAP_SYS_ADMIN); elsewhere they skip and
say so. Where the disk fills up during an ingest depends on the sizes (DuckDB writing the
store, DuckDB spilling to the workspace's .tmp/, SQLite writing the audit log after the
commit): each scenario checks the promise wherever it hit, and at least one must hit.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steadycast.storage import releases, store
from steadycast.workspace import Workspace
from tests.integration.test_run import PIPELINE, fleet_csv
from tests.reliability.conftest import LONG, Record

INGEST_PIPELINE = (
    '[source]\nid_column="meter_id"\ntime_column="timestamp"\nvalue_column="kwh"\n'
    '[series]\nfrequency="1h"\nhorizon=24\n'
)
RUN_PIPELINE = (
    PIPELINE.replace(
        '"Naive", "SeasonalNaive", "HistoricAverage", "SES"', '"Naive", "SeasonalNaive"'
    )
    + "\n[backtest]\nwindows = 1\n"
)


@dataclass(frozen=True)
class Scenario:
    """A small workspace, a small batch that fits, then a big one that does not."""

    name: str
    rows: int  # of the big file
    # Small, so DuckDB spills to the workspace's .tmp/ and fills it; not so small that the
    # re-run cannot finish with space back (DuckDB holds some blocks in memory regardless).
    memory_limit: str = ""
    size_mb: int = 8


# A stored row takes about 7.5 bytes (DuckDB compresses), so 700k rows need about 5 MB.
SCENARIOS = [Scenario("store write", 700_000, size_mb=4)]
if LONG:
    SCENARIOS += [
        Scenario("spill", 400_000, memory_limit="32MB", size_mb=4),
        Scenario("near the limit", 1_000_000),
        Scenario("store write, big", 2_000_000),
        Scenario("spill, bigger file", 1_500_000, memory_limit="64MB", size_mb=12),
        Scenario("spill while reading", 300_000, memory_limit="16MB", size_mb=3),
    ]


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    """Mount a tmpfs of ``size_mb`` at ``path`` (skips the test where that is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("disk-full needs `mount` to make a small tmpfs; it is not installed")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(
            "disk-full needs a small tmpfs and mounting one is not permitted here "
            f"({done.stderr.strip()}); run as root with CAP_SYS_ADMIN"
        )
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def resize(path: Path, size_mb: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size_mb}m", str(path)], check=True)


def fill(directory: Path) -> Path:
    """Write zeros into ``directory`` until its filesystem is full."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 1 << 12, 1 << 9, 1):
            with contextlib.suppress(OSError):
                for _ in range(1 << 16):  # bounded; a tmpfs is full long before
                    out.write(b"\0" * chunk)
    return filler


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steadycast.cli", *args], capture_output=True, text=True, timeout=600
    )


def clear_failure(done: subprocess.CompletedProcess[str]) -> str | None:
    """What is wrong with how a command failed (None: exit 1 and one clear line)."""
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    if done.returncode != 1:
        return f"exit code {done.returncode}"
    if "Traceback" in done.stderr:
        return f"a traceback: {done.stderr.strip().splitlines()[-1]}"
    if len(lines) != 1 or not lines[0].startswith("error: "):
        return f"not one 'error:' line: {done.stderr[-300:]!r}"
    said = re.sub(r"/\S+", "PATH", lines[0]).lower()  # the paths here hold "disk" too
    if not any(words in said for words in ("no space left", "disk space", "disk full")):
        return f"the line does not say the disk is full: {lines[0]!r}"
    return None


def blames_the_file(done: subprocess.CompletedProcess[str]) -> bool:
    """Running out of spill space while reading must not be reported as the input file being
    unreadable."""
    return "cannot be read as" in done.stderr and "failed to offload" in done.stderr


def write_rows(path: Path, lo: int, hi: int) -> Path:
    """Rows ``lo`` to ``hi`` of a fleet of 1,000 hourly meters (each row its own key), with
    random values: they compress badly, so the rows take the room they should."""
    i = np.arange(lo, hi)
    hours = pd.Timestamp("2024-01-01") + pd.to_timedelta(i // 1000, unit="h")
    frame = pd.DataFrame(
        {
            "meter_id": np.char.add("m", (i % 1000).astype(str)),
            "timestamp": hours.strftime("%Y-%m-%d %H:%M"),
            "kwh": np.random.default_rng(lo).random(len(i)),
        }
    )
    frame.to_csv(path, index=False)
    return path


def counts(ws: Workspace) -> dict[str, int]:
    """Stored rows per batch."""
    with store.reading(ws.store_path) as con:
        rows = con.execute(
            "SELECT b.batch_id, count(*) FROM observations o "
            "JOIN batches b USING (pipeline, batch_no) GROUP BY 1"
        ).fetchall()
    return {str(batch): int(n) for batch, n in rows}


@pytest.mark.timeout(1800 if LONG else 600)
def test_disk_full_mid_ingest(tmp_path: Path, figure: Record) -> None:
    small = write_rows(tmp_path / "small.csv", 0, 20_000)
    violations: list[str] = []
    filled = 0
    rows_lost = 0
    seen: dict[str, str] = {}
    for i, sc in enumerate(SCENARIOS):
        big = write_rows(tmp_path / f"big{i}.csv", 20_000, 20_000 + sc.rows)
        with tmpfs(tmp_path / f"disk{i}", sc.size_mb) as disk:
            ws = Workspace.init(disk / "ws")
            limit = f'[ingest]\nmemory_limit="{sc.memory_limit}"\n' if sc.memory_limit else ""
            (ws.pipelines_dir / "meters.toml").write_text(INGEST_PIPELINE + limit)
            first = cli("ingest", "meters", str(small), "-w", str(ws.root), "--json")
            assert first.returncode == 0, first.stderr  # the small batch fits
            committed = counts(ws)

            done = cli("ingest", "meters", str(big), "-w", str(ws.root), "--json")
            if done.returncode == 0:
                seen[sc.name] = "fitted"
            else:
                filled += 1
                seen[sc.name] = done.stderr.strip()[:300]
                problem = clear_failure(done)
                if problem:
                    violations.append(f"{sc.name}: {problem}")

            resize(disk, 512)  # space is back
            rerun = cli("ingest", "meters", str(small), str(big), "-w", str(ws.root), "--json")
            if rerun.returncode != 0:
                violations.append(f"{sc.name}: the re-run failed: {rerun.stderr[-300:]}")
                continue
            statuses = [b["status"] for b in json.loads(rerun.stdout)["batches"]]
            if statuses[0] != "skipped":
                violations.append(f"{sc.name}: the committed batch was ingested again")
            after = counts(ws)
            for batch_id, n in committed.items():
                lost = n - after.get(batch_id, 0)
                rows_lost += max(lost, 0)
                if lost:
                    violations.append(f"{sc.name}: {lost} committed rows lost")
            if sorted(after.values()) != sorted([20_000, sc.rows]):
                violations.append(f"{sc.name}: after the re-run the store holds {after}")
    figure(
        "disk-full",
        violations=len(violations) + (0 if filled else 1),
        value=(
            f"mid-ingest: {rows_lost} rows lost; the disk filled in {filled} of "
            f"{len(SCENARIOS)} ingests; {len(violations)} unclear errors or failed re-runs"
        ),
        scenarios=seen,
        violations_found=violations[:5],
    )
    assert filled, f"no scenario filled the disk: {seen}"
    assert not violations, violations


def test_disk_full_while_reading_is_not_blamed_on_the_input_file(tmp_path: Path) -> None:
    small = write_rows(tmp_path / "small.csv", 0, 20_000)
    big = write_rows(tmp_path / "big.csv", 20_000, 320_000)
    with tmpfs(tmp_path / "disk", 3) as disk:
        ws = Workspace.init(disk / "ws")
        (ws.pipelines_dir / "meters.toml").write_text(
            INGEST_PIPELINE + '[ingest]\nmemory_limit="16MB"\n'
        )
        assert cli("ingest", "meters", str(small), "-w", str(ws.root)).returncode == 0
        done = cli("ingest", "meters", str(big), "-w", str(ws.root))
    assert done.returncode == 1, done.stderr  # the disk did fill up
    assert not blames_the_file(done), done.stderr
    assert clear_failure(done) is None, done.stderr


def release_state(ws: Workspace) -> tuple[str | None, list[str]]:
    """The current release id, and any visible release that is not complete."""
    broken = [
        r.release_id
        for r in releases.list_releases(ws.releases_dir, "meters")
        if not r.forecasts_path.exists()
    ]
    return releases.current_id(ws.releases_dir, "meters"), broken


def content(ws: Workspace) -> str:
    release = releases.current(ws.releases_dir, "meters")
    assert release is not None
    return releases.content_hash(pd.read_parquet(release.forecasts_path))


@pytest.mark.timeout(1200 if LONG else 600)
def test_disk_full_mid_publish(tmp_path: Path, figure: Record) -> None:
    data = fleet_csv(tmp_path / "fleet.csv", series=2)
    violations: list[str] = []
    messages = {}
    with tmpfs(tmp_path / "disk", 64) as disk:
        ws = Workspace.init(disk / "ws")
        (ws.pipelines_dir / "meters.toml").write_text(RUN_PIPELINE)
        assert cli("ingest", "meters", str(data), "-w", str(ws.root)).returncode == 0
        # releases/ on a disk of its own, small, so it can be filled while the rest has room.
        with tmpfs(ws.releases_dir, 2) as shelf:
            first = cli("run", "meters", "-w", str(ws.root), "--json")
            assert first.returncode == 0, first.stderr
            good = json.loads(first.stdout)["release_id"]
            good_content = content(ws)

            filler = fill(shelf)
            full = cli("run", "meters", "--force", "-w", str(ws.root), "--json")
            messages["releases full"] = (json.loads(full.stdout) if full.stdout else {}).get(
                "error", full.stderr.strip()
            )
            if full.returncode != 1 or "Traceback" in full.stderr:
                violations.append(f"releases full: exit {full.returncode}: {full.stderr[-300:]}")
            elif "No space left on device" not in str(messages["releases full"]):
                violations.append(f"releases full: unclear error {messages['releases full']!r}")
            current, broken = release_state(ws)
            if current != good or broken or content(ws) != good_content:
                violations.append(f"releases full: current {current}, broken {broken}")
            if any(p.name.startswith(".tmp") for p in (shelf / "meters").iterdir()):
                violations.append("releases full: a half-written release is left taking space")

            filler.unlink()
            again = cli("run", "meters", "--force", "-w", str(ws.root), "--json")
            if again.returncode != 0 or content(ws) != good_content:
                violations.append(
                    f"releases full: the re-run did not publish: {again.stderr[-300:]}"
                )

        if LONG:
            # The whole workspace full as a run starts: the control database cannot be written.
            before = releases.current_id(ws.releases_dir, "meters")
            filler = fill(disk)
            full = cli("run", "meters", "--force", "-w", str(ws.root), "--json")
            messages["workspace full"] = full.stderr.strip()
            problem = clear_failure(full)
            if problem:
                violations.append(f"workspace full: {problem}")
            if releases.current_id(ws.releases_dir, "meters") != before:
                violations.append("workspace full: the current release changed")
            filler.unlink()
            again = cli("run", "meters", "--force", "-w", str(ws.root), "--json")
            if again.returncode != 0:
                violations.append(f"workspace full: the re-run failed: {again.stderr[-300:]}")
    figure(
        "disk-full",
        violations=len(violations),
        value=(
            f"mid-publish: {len(violations)} violations (release write fails with one clear "
            "line, the current release is kept, the re-run publishes the same content)"
        ),
        messages=messages,
        violations_found=violations[:5],
    )
    assert not violations, violations
