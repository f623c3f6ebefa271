"""A new release every 200 ms while clients read: every response whole and from one release.

The server is the real ``steadycast serve`` in a child process (uvicorn on 127.0.0.1, access
log on, as in production); releases are written and made current with ``releases.py``, the
way the publish stage does it. Every value of release k says k: each ``yhat`` is k, each
interval bound is k plus a fixed offset, ``model`` is the release id and each row's ``ds`` is
shifted by k hours. So a response that mixed two releases, or carried a release id that does
not match its rows, is caught row by row.

Clients are plain asyncio streams speaking HTTP/1.1 with keep-alive (httpx would spend more CPU
per request than the server on 2 shared cores) and ask for a mix: one series, a few series as
CSV, the whole release, and one series' detail page.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from steadycast.storage import releases
from steadycast.workspace import Workspace
from tests.pipelines import pipeline_toml
from tests.reliability.conftest import Record, size

PIPELINE = "meters"
SERIES = [f"m{i:03d}" for i in range(40)]
HORIZON = 24
PUBLISH_EVERY_S = 0.2
BASE = pd.Timestamp("2024-03-11")
OFFSETS = {"yhat_lo_80": -0.5, "yhat_hi_80": 0.5, "yhat_lo_95": -1.0, "yhat_hi_95": 1.0}
PIPELINE_TOML = pipeline_toml(horizon=HORIZON, min_value=None)


def release_id(k: int) -> str:
    return f"pvs-{k:06d}"


def release_frame(k: int) -> pd.DataFrame:
    """Release k: every value and timestamp says k."""
    steps = pd.date_range(BASE + pd.Timedelta(hours=k), periods=HORIZON, freq="1h")
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(SERIES, HORIZON),
            "ds": np.tile(steps.to_numpy(), len(SERIES)),
            "yhat": float(k),
            "model": release_id(k),
        }
    )
    for column, offset in OFFSETS.items():
        frame[column] = float(k) + offset
    return frame


def publish(ws: Workspace, k: int) -> None:
    release = releases.write_release(
        ws.releases_dir,
        PIPELINE,
        release_id(k),
        release_frame(k),
        {"levels": [80, 95], "horizon": HORIZON, "frequency": "1h"},
    )
    releases.make_current(ws.releases_dir, PIPELINE, release.release_id)


def release_number(rid: str) -> int | None:
    if not rid.startswith("pvs-") or not rid[4:].isdigit():
        return None
    return int(rid[4:])


def check_rows(rows: list[dict[str, object]], rid: str, wanted: list[str]) -> str | None:
    """Why these rows are not exactly the rows of release ``rid`` for ``wanted``, or None."""
    k = release_number(rid)
    if k is None:
        return f"unknown release id {rid!r}"
    steps = [
        t.strftime("%Y-%m-%dT%H:%M:%SZ")
        for t in pd.date_range(BASE + pd.Timedelta(hours=k), periods=HORIZON, freq="1h")
    ]
    if len(rows) != HORIZON * len(wanted):
        return f"{len(rows)} rows for {len(wanted)} series"
    for i, row in enumerate(rows):
        uid, step = wanted[i // HORIZON], steps[i % HORIZON]
        if row.get("unique_id") != uid or row.get("ds") != step or row.get("model") != rid:
            return f"row {i} is {row.get('unique_id')}/{row.get('ds')}/{row.get('model')}"
        if float(str(row["yhat"])) != k:
            return f"row {i} has yhat {row['yhat']} in release {k}"
        for column, offset in OFFSETS.items():
            if float(str(row[column])) != k + offset:
                return f"row {i} has {column} {row[column]} in release {k}"
    return None


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    torn: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)
    releases_seen: set[str] = field(default_factory=set)
    went_back: int = 0


async def request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, dict[str, str], bytes]:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: steadycast\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def judge(kind: str, wanted: list[str], headers: dict[str, str], body: bytes) -> tuple[str, str]:
    """(release id, problem or "") of one 200 response."""
    header_rid = headers.get("x-steadycast-release", "")
    if kind == "csv":
        text = body.decode()
        parsed = list(csv.DictReader(io.StringIO(text)))
        problem = check_rows(parsed, header_rid, wanted)  # type: ignore[arg-type]
        return header_rid, problem or ""
    doc = json.loads(body)
    if kind == "detail":
        rid = str(doc.get("release_id"))
        rows = doc.get("forecast", [])
        prov = doc.get("provenance")
        problem = check_rows(rows, rid, wanted)
        if problem is None and prov not in (None, {}):
            problem = f"provenance {prov!r} in a release written without any"
        return rid, problem or ""
    rid = str(doc.get("release_id"))
    problem = check_rows(doc.get("rows", []), rid, wanted)
    if problem is None and header_rid != rid:
        problem = f"header says {header_rid}, body says {rid}"
    return rid, problem or ""


async def client(port: int, seed: int, until: float, begun: list[int], tally: Tally) -> None:
    """``begun[0]`` is the newest release whose publish has started: once its rename lands the
    server may serve it, a moment before ``publish`` returns to the publisher."""
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    newest_seen = -1
    base = f"/api/v1/pipelines/{PIPELINE}"
    try:
        while time.monotonic() < until:
            roll = rng.random()
            if roll < 0.75:
                kind, wanted = "one", [rng.choice(SERIES)]
                path = f"{base}/forecast?series={wanted[0]}"
            elif roll < 0.85:
                kind, wanted = "csv", sorted(rng.sample(SERIES, 3))
                path = f"{base}/forecast?format=csv&" + "&".join(f"series={s}" for s in wanted)
            elif roll < 0.95:
                kind, wanted = "all", SERIES
                path = f"{base}/forecast"
            else:
                kind, wanted = "detail", [rng.choice(SERIES)]
                path = f"{base}/series/{wanted[0]}?history=1"
            started = time.perf_counter()
            try:
                status, headers, body = await request(reader, writer, path)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                tally.errors.append(f"{kind}: {type(exc).__name__}: {exc}"[:200])
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            tally.latencies.append(time.perf_counter() - started)
            tally.by_kind[kind] = tally.by_kind.get(kind, 0) + 1
            if status != 200:
                tally.errors.append(f"{kind} {path}: HTTP {status} {body[:200]!r}")
                continue
            rid, problem = judge(kind, sorted(wanted) if kind == "all" else wanted, headers, body)
            k = release_number(rid)
            if not problem and (k is None or k > begun[0]):
                problem = f"release {rid} is newer than anything being published ({begun[0]})"
            if problem:
                tally.torn.append(f"{kind} {path}: {problem}"[:300])
                continue
            tally.releases_seen.add(rid)
            assert k is not None
            if k < newest_seen:
                tally.went_back += 1
            newest_seen = max(newest_seen, k)
    finally:
        writer.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"steadycast serve did not become ready on port {port}")


def serve(ws: Workspace, port: int, log: Path) -> subprocess.Popen[bytes]:
    """The real CLI, ``steadycast serve``, in a child process of its own."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "steadycast.cli", "serve"),
                *("--host", "127.0.0.1", "--port", str(port), "-w", str(ws.root)),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "STEADYCAST_API_TOKEN"},
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_every_response_is_whole_and_from_one_release(tmp_path: Path, figure: Record) -> None:
    seconds = size(5, 60, env="STEADYCAST_PVS_SECONDS")
    clients = size(20, 200, env="STEADYCAST_PVS_CLIENTS")
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / f"{PIPELINE}.toml").write_text(PIPELINE_TOML)
    publish(ws, 0)
    latest, begun = [0], [0]
    port = free_port()
    proc = serve(ws, port, tmp_path / "serve.log")
    tally = Tally()
    stop_publishing = threading.Event()
    publish_errors: list[str] = []

    def publisher() -> None:
        k = 0
        next_at = time.monotonic()
        while not stop_publishing.is_set():
            next_at += PUBLISH_EVERY_S
            stop_publishing.wait(max(0.0, next_at - time.monotonic()))
            k += 1
            begun[0] = k
            try:
                publish(ws, k)
            except OSError as exc:  # the disk, not the server: reported, not hidden
                publish_errors.append(f"release {k}: {exc}")
                return
            latest[0] = k

    async def load(until: float) -> None:
        await asyncio.gather(*(client(port, i, until, begun, tally) for i in range(clients)))

    try:
        wait_ready(port, proc)
        thread = threading.Thread(target=publisher, daemon=True)
        thread.start()
        asyncio.run(load(time.monotonic() + seconds))
        stop_publishing.set()
        thread.join(timeout=30)
        server_alive = proc.poll() is None
    finally:
        stop_publishing.set()
        stop(proc)
    log = (tmp_path / "serve.log").read_text(errors="replace")
    server_errors = [
        line for line in log.splitlines() if "Traceback" in line or re.search(r'" 5\d\d\b', line)
    ]
    requests = len(tally.latencies)
    p99_ms = float(np.percentile(tally.latencies, 99)) * 1000 if requests else 0.0
    errors = len(tally.errors) + len(server_errors) + len(publish_errors) + (not server_alive)
    figure(
        "publish-vs-serve",
        violations=len(tally.torn) + errors,
        value=(
            f"{len(tally.torn)} torn reads, {errors} errors, p99 {p99_ms:.0f} ms over "
            f"{requests:,} requests ({clients} clients, {seconds} s, {latest[0]} releases)"
        ),
        clients=clients,
        seconds=seconds,
        requests=requests,
        requests_by_kind=tally.by_kind,
        releases_published=latest[0],
        releases_seen=len(tally.releases_seen),
        p50_ms=round(float(np.percentile(tally.latencies, 50)) * 1000, 1) if requests else None,
        p99_ms=round(p99_ms, 1),
        went_back=tally.went_back,
        torn=tally.torn[:10],
        errors=(tally.errors + server_errors + publish_errors)[:10],
    )
    assert server_alive, log[-2000:]
    assert not publish_errors, publish_errors
    assert not tally.torn, tally.torn[:5]
    assert not tally.errors, tally.errors[:5]
    assert not server_errors, server_errors[:5]
    # The test means something only if releases really moved under the readers.
    assert latest[0] >= seconds and len(tally.releases_seen) > 2, (latest[0], tally.releases_seen)
