"""Ingest, run and serve together for a long while: memory stays bounded and nothing fails.

A small synthetic fleet (``steadycast synth``) is cut into daily batches. After a warm-up (the
first two weeks ingested and run once, the server up and every route read once), the soak
repeats ``steadycast ingest`` of the next day and ``steadycast run`` while clients keep reading
from a real ``steadycast serve`` (forecasts, pipelines, releases, runs, metrics). Every process
is sampled for its resident memory (RSS) a few times a second: the server, each ingest, each
run and the model workers the run starts.

The promise: no error (every ingest exits 0, every run publishes or is held by its gate, every
read is a 200, the server lives and logs no traceback), and memory is bounded: the server grows
by less than ``SERVER_GROWTH_MB`` after the warm-up, and the peak of each kind of short-lived
process (ingest, run, model worker) in the last iterations is within ``PEAK_GROWTH_MB`` of its
peak in the first ones: a leak in the server or a per-run growth shows up as a trend.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest

from steadycast.workspace import Workspace
from tests.reliability.conftest import LONG, Record, size

PIPELINE = "fleet"
SERIES = 20
WARM_DAYS = 14
SERVER_GROWTH_MB = 64.0  # the server's RSS after the warm-up may grow by less than this
PEAK_GROWTH_MB = 64.0  # a kind of process's peak RSS may drift by less than this
SOAK_S = size(20, 600, env="STEADYCAST_SOAK_SECONDS")
# Light models: the soak is about memory over time, not about the cost of a model.
EXTRA = """
[models]
candidates = ["SeasonalNaive", "HistoricAverage", "SES"]

[backtest]
windows = 2

[forecast]
workers = 1
"""


@dataclass
class Memory:
    """RSS samples: the server over time, and the peak of each short-lived process by role."""

    server: list[tuple[float, float]] = field(default_factory=list)  # (time, MB)
    peaks: dict[str, list[float]] = field(default_factory=dict)  # role -> peak MB per process
    current: dict[int, tuple[str, float]] = field(default_factory=dict)  # pid -> (role, peak)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def finish(self) -> None:
        """Close the books on the process tree that just ended (one runs at a time)."""
        with self.lock:
            for role, peak in self.current.values():
                self.peaks.setdefault(role, []).append(peak)
            self.current.clear()


def rss_mb(proc: psutil.Process) -> float:
    return float(proc.memory_info().rss) / 2**20


def sampler(
    server: psutil.Process, tracked: list[psutil.Process], memory: Memory, stop: threading.Event
) -> None:
    """Every 0.2 s: the server's RSS, and the RSS of each process in the tracked trees."""
    while not stop.wait(0.2):
        with contextlib.suppress(psutil.Error):
            memory.server.append((time.monotonic(), rss_mb(server)))
        for root in list(tracked):
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in procs:
                try:
                    role = role_of(proc, root)
                    mb = rss_mb(proc)
                except psutil.Error:
                    continue
                with memory.lock:
                    old = memory.current.get(proc.pid, (role, 0.0))
                    memory.current[proc.pid] = (role, max(old[1], mb))


def role_of(proc: psutil.Process, root: psutil.Process) -> str:
    cmdline = proc.cmdline()
    if "steadycast.models._worker" in cmdline:
        return "model worker"
    if proc.pid == root.pid:
        return next((c for c in ("ingest", "run") if c in cmdline), "cli")
    return "other child"


def cli(
    args: list[str], ws: Workspace, tracked: list[psutil.Process], memory: Memory
) -> subprocess.CompletedProcess[str]:
    """Run ``steadycast ARGS -w WS`` with its process tree sampled."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "steadycast.cli", *args, "-w", str(ws.root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    handle = psutil.Process(proc.pid)
    tracked.append(handle)
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        tracked.remove(handle)
    memory.finish()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(ws: Workspace, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The real ``steadycast serve`` in a child process; yields it and its base URL."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "steadycast.cli", "serve", "--port", str(port)),
                *("--host", "127.0.0.1", "-w", str(ws.root)),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"steadycast serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield proc, url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def reader(
    url: str, ids: list[str], stop: threading.Event, seen: dict[str, int], errors: list[str]
) -> None:
    """Keep reading every kind of route (about 50 requests a second per reader)."""
    paths = [
        *(f"/api/v1/pipelines/{PIPELINE}/forecast?series={i}" for i in ids[:5]),
        f"/api/v1/pipelines/{PIPELINE}/forecast?format=csv",
        "/api/v1/pipelines",
        f"/api/v1/pipelines/{PIPELINE}/releases",
        f"/api/v1/pipelines/{PIPELINE}/series/{ids[0]}?history=48",
        "/api/v1/incidents",
        "/metrics",
    ]
    with httpx.Client(base_url=url, timeout=30) as client:
        n = 0
        while not stop.wait(0.02):
            path = paths[n % len(paths)]
            n += 1
            try:
                response = client.get(path)
            except httpx.HTTPError as exc:
                errors.append(f"{path}: {type(exc).__name__}: {exc}")
                continue
            seen[path.split("?")[0]] = seen.get(path.split("?")[0], 0) + 1
            if response.status_code != 200:
                errors.append(f"{path}: HTTP {response.status_code} {response.text[:200]}")


def fleet(root: Path) -> tuple[Path, list[Path], list[str]]:
    """A synthetic fleet from the real ``steadycast synth``, cut into a warm-up batch and one
    batch per following day; returns the pipeline file, the batches and the series ids."""
    days = WARM_DAYS + max(2, SOAK_S // 10)  # more days than the soak can ingest
    out = root / "synth"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "steadycast.cli", "synth", "-o", str(out)),
            *("--series", str(SERIES), "--days", str(days), "--no-faults", "--seed", "7", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    frame = pd.concat([pd.read_parquet(p) for p in sorted((out / "data").glob("*.parquet"))])
    frame["unique_id"] = frame["unique_id"].astype(str)
    start = frame["ds"].min()
    day = ((frame["ds"] - start) / pd.Timedelta(days=1)).astype(int)
    batches = []
    first = root / "batch-warm.parquet"
    frame[day < WARM_DAYS].to_parquet(first, index=False)
    batches.append(first)
    for d in range(WARM_DAYS, days):
        path = root / f"batch-day{d:03d}.parquet"
        frame[day == d].to_parquet(path, index=False)
        batches.append(path)
    return out / "pipeline.toml", batches, sorted(frame["unique_id"].unique())


def growth(values: list[float]) -> float:
    """How far the later values rise above the first ones (a trend, not a single spike)."""
    if len(values) < 2:
        return 0.0
    head = max(1, len(values) // 4)
    return max(values[head:]) - max(values[:head])


@pytest.mark.timeout(SOAK_S + 900)
def test_ingest_run_and_serve_together_keep_memory_bounded(tmp_path: Path, figure: Record) -> None:
    pipeline_file, batches, ids = fleet(tmp_path)
    ws = Workspace.init(tmp_path / "ws")
    shutil.copy(pipeline_file, ws.pipelines_dir / f"{PIPELINE}.toml")
    with (ws.pipelines_dir / f"{PIPELINE}.toml").open("a") as toml:
        toml.write(EXTRA)
    memory = Memory()
    tracked: list[psutil.Process] = []
    errors: list[str] = []
    outcomes: dict[str, int] = {}
    stop = threading.Event()
    seen: dict[str, int] = {}
    iterations = 0
    with serving(ws, tmp_path / "serve.log") as (server, url):
        sample = threading.Thread(
            target=sampler, args=(psutil.Process(server.pid), tracked, memory, stop), daemon=True
        )
        sample.start()
        # Warm-up: the first batch ingested and run once, every route read once.
        warm = [cli(["ingest", PIPELINE, str(batches[0])], ws, tracked, memory)]
        warm.append(cli(["run", PIPELINE, "--json"], ws, tracked, memory))
        assert warm[0].returncode == 0, warm[0].stderr[-2000:]
        assert warm[1].returncode == 0, warm[1].stdout[-2000:] + warm[1].stderr[-2000:]
        readers = [
            threading.Thread(target=reader, args=(url, ids, stop, seen, errors), daemon=True)
            for _ in range(2)
        ]
        for thread in readers:
            thread.start()
        time.sleep(2.0)
        warm_until = time.monotonic()
        memory.peaks.clear()  # the warm-up's processes do not count

        deadline = time.monotonic() + SOAK_S
        for batch in batches[1:]:
            if time.monotonic() >= deadline:
                break
            done = cli(["ingest", PIPELINE, str(batch)], ws, tracked, memory)
            if done.returncode != 0:
                errors.append(f"ingest {batch.name}: exit {done.returncode}: {done.stderr[-500:]}")
            done = cli(["run", PIPELINE, "--json"], ws, tracked, memory)
            try:
                status = json.loads(done.stdout)["status"]
            except (ValueError, KeyError):
                status = f"exit {done.returncode}"
            outcomes[status] = outcomes.get(status, 0) + 1
            if done.returncode not in (0, 3):
                errors.append(f"run after {batch.name}: {status}: {done.stderr[-500:]}")
            iterations += 1
        stop.set()
        for thread in [*readers, sample]:
            thread.join(timeout=60)
        server_alive = server.poll() is None
    log = (tmp_path / "serve.log").read_text(errors="replace")
    errors += [
        line for line in log.splitlines() if "Traceback" in line or re.search(r'" 5\d\d\b', line)
    ]
    if not server_alive:
        errors.append("the server died")

    after = [mb for t, mb in memory.server if t >= warm_until]
    server_growth = (max(after) - after[0]) if after else 0.0
    drift = {role: growth(peaks) for role, peaks in memory.peaks.items()}
    peak = {role: max(peaks) for role, peaks in memory.peaks.items()}
    too_much = [f"server grew {server_growth:.0f} MB"] if server_growth >= SERVER_GROWTH_MB else []
    too_much += [f"{r} peak drifted {d:.0f} MB" for r, d in drift.items() if d >= PEAK_GROWTH_MB]
    figure(
        "load-soak",
        violations=len(errors) + len(too_much) + (iterations == 0),
        value=(
            f"{SOAK_S // 60 if SOAK_S >= 120 else SOAK_S}{' min' if SOAK_S >= 120 else ' s'}: "
            f"server +{server_growth:.0f} MB after warm-up; peak drift "
            + ", ".join(f"{r} {d:+.0f} MB" for r, d in sorted(drift.items()))
            + f" over {iterations} ingest+run rounds; {len(errors)} errors"
        ),
        seconds=SOAK_S,
        long=LONG,
        iterations=iterations,
        run_outcomes=outcomes,
        requests=seen,
        server_rss_mb={
            "at_warm_up": round(after[0], 1) if after else None,
            "max": round(max(after), 1) if after else None,
        },
        peak_rss_mb={r: round(v, 1) for r, v in peak.items()},
        peak_drift_mb={r: round(v, 1) for r, v in drift.items()},
        processes={r: len(v) for r, v in memory.peaks.items()},
        bounds_mb={"server_growth": SERVER_GROWTH_MB, "peak_drift": PEAK_GROWTH_MB},
        errors=errors[:10],
    )
    assert iterations > 0, "the soak ended before one ingest + run round"
    assert not errors, errors[:10]
    assert not too_much, too_much
