"""Serving benchmark: single-series forecasts from `steadycast serve` under many keep-alive clients.

A workspace with one published release of N series (written directly as a release, so the bench
measures serving, not a run) is served by the real app in a child process (uvicorn, one worker,
the access log on as in production). Then C concurrent keep-alive clients ask for random
single-series forecasts for S seconds.

The load generator is plain asyncio streams speaking HTTP/1.1, in this process: httpx's
AsyncClient costs more CPU per request than the server does, so on 2 shared cores it measures
the client, not the server. Server and clients share the machine, as they would on a laptop.

    python bench/serve.py [--series 10000] [--clients 200] [--seconds 30] [--no-access-log]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WORK, machine, today, write_section

from steadycast.storage import releases
from steadycast.workspace import Workspace

PIPELINE = "bench"
PIPELINE_TOML = """\
[source]
id_column = "meter_id"
time_column = "timestamp"
value_column = "kwh"

[series]
frequency = "1h"
horizon = 48
season_lengths = [24]
"""

SERVER = """
import sys
from steadycast.server import serve
from steadycast.workspace import Workspace
http, loop = sys.argv[4].split("+")
serve(Workspace.open(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]),
      access_log=sys.argv[3] == "1", http=http, loop=loop)
"""


def build_workspace(root: Path, series: int, horizon: int = 48) -> list[str]:
    """A workspace with one current release of ``series`` series; returns their ids."""
    ids = [f"MTR{i:07d}" for i in range(series)]
    marker = root / f".built-{series}"
    if marker.exists():
        return ids
    shutil.rmtree(root, ignore_errors=True)
    ws = Workspace.init(root)
    (ws.pipelines_dir / f"{PIPELINE}.toml").write_text(PIPELINE_TOML)
    rng = np.random.default_rng(0)
    steps = pd.date_range("2024-03-11", periods=horizon, freq="1h")
    yhat = rng.random(series * horizon) * 3
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(ids, horizon),
            "ds": np.tile(steps.values, series),
            "yhat": yhat,
            "model": "SeasonalNaive",
            "yhat_lo_80": yhat - 0.2,
            "yhat_hi_80": yhat + 0.2,
            "yhat_lo_95": yhat - 0.4,
            "yhat_hi_95": yhat + 0.4,
        }
    )
    release = releases.write_release(
        ws.releases_dir, PIPELINE, "bench-release", frame, {"levels": [80, 95]}
    )
    releases.make_current(ws.releases_dir, PIPELINE, release.release_id)
    marker.touch()
    return ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the server on port {port} did not become ready")


async def one_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, bytes]:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length)
    return status, body


async def client(
    port: int, ids: list[str], until: float, latencies: list[float], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rng = random.Random()
    try:
        while time.perf_counter() < until:
            path = f"/api/v1/pipelines/{PIPELINE}/forecast?series={rng.choice(ids)}"
            started = time.perf_counter()
            try:
                status, body = await one_request(reader, writer, path)
            except (OSError, asyncio.IncompleteReadError) as exc:
                errors.append(type(exc).__name__)
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            latencies.append(time.perf_counter() - started)
            if status != 200 or not body.startswith(b'{"pipeline"'):
                errors.append(f"HTTP {status}")
    finally:
        writer.close()


async def load(port: int, ids: list[str], clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(*(client(port, ids, until, latencies, errors) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0

    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": ordered[-1] * 1000 if ordered else 0.0,
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else 0.0,
        "errors": len(errors),
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


STACKS = {
    "h11": "h11+asyncio",  # what a plain `pip install uvicorn` gives
    "httptools": "httptools+uvloop",  # uvicorn[standard]
}


def available(stack: str) -> bool:
    try:
        for module in STACKS[stack].split("+"):
            if module != "asyncio":
                __import__(module)
    except ImportError:
        return False
    return True


def measure_stack(
    root: Path, ids: list[str], stack: str, args: argparse.Namespace
) -> dict[str, float]:
    """Start the server with one HTTP stack, warm it, load it; the figures of that run."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVER,
            str(root),
            str(port),
            "0" if args.no_access_log else "1",
            STACKS[stack],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(port)
        t1 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as s:  # first read loads the release
            s.sendall(
                f"GET /api/v1/pipelines/{PIPELINE}/forecast?series={ids[0]} HTTP/1.1\r\n"
                "Host: bench\r\nConnection: close\r\n\r\n".encode()
            )
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        warm_s = time.perf_counter() - t1
        rss_mb = int(Path(f"/proc/{server.pid}/statm").read_text().split()[1]) * 4096 / 2**20
        cpu0 = cpu_seconds(server.pid)
        result = asyncio.run(load(port, ids, args.clients, args.seconds))
        server_cpu = cpu_seconds(server.pid) - cpu0
    finally:
        server.terminate()
        server.wait(timeout=30)
    result.update(
        warm_s=warm_s,
        rss_mb=rss_mb,
        server_cores=server_cpu / result["seconds"],
        rps_per_core=result["requests"] / server_cpu if server_cpu else 0.0,
        body_bytes=len(reply.split(b"\r\n\r\n", 1)[1]),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--http", default="h11,httptools", help="HTTP stacks to measure: h11, httptools"
    )
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only, keep results/")
    args = parser.parse_args()

    root = WORK / "serve-ws"
    ids = build_workspace(root, args.series)
    load_before = os.getloadavg()
    results: dict[str, dict[str, float]] = {}
    for stack in [s.strip() for s in args.http.split(",") if s.strip()]:
        if stack not in STACKS:
            parser.error(f"--http {stack!r}: use h11 or httptools")
        if not available(stack):
            print(f"{stack}: not installed, skipped (pip install 'uvicorn[standard]')")
            continue
        results[stack] = measure_stack(root, ids, stack, args)
        print(stack, json.dumps(results[stack], indent=1))
    load_after = os.getloadavg()
    cmd = " ".join(["python", "bench/serve.py", *sys.argv[1:]])
    rows = "\n".join(
        f"| {STACKS[k]} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
        f"{r['max_ms']:.0f} | {r['requests']:,} | {r['errors']} | {r['server_cores']:.2f} | "
        f"{r['rps_per_core']:,.0f} | {r['warm_s']:.1f} s / {r['rss_mb']:.0f} MB |"
        for k, r in results.items()
    )
    met = [k for k, r in results.items() if r["rps"] >= 3000 and r["p99_ms"] < 100]
    body_kb = max((r["body_bytes"] for r in results.values()), default=0) / 1024
    md = f"""## Serving benchmark

{today()} on {machine()}.
Load average before / after: {" ".join(f"{v:.2f}" for v in load_before)} /
{" ".join(f"{v:.2f}" for v in load_after)}.

Command: `{cmd}`

One uvicorn worker, access log {"off" if args.no_access_log else "on"}, serving single-series
forecasts (48 rows, random ids, {body_kb:.1f} KB of JSON each) of a release of {args.series:,} series from
its in-memory snapshot; {args.clients} concurrent keep-alive clients (asyncio streams, HTTP/1.1)
in one process on the same machine for {args.seconds:.0f} s per stack.

| HTTP stack | req/s | p50 ms | p99 ms | max ms | requests | errors | server cores used | req/s per server core | first request / RSS |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |
{rows}

"Server cores used" is the server process's CPU time over the run's wall time. A single
worker can use one core; when the load average is above the core count (other work on a shared
machine, plus this benchmark's own client), the server gets a fraction of one, and "req/s per
server core" is the figure that carries over to a machine where the server has its core. The
load generator shares the same 2 cores, so on an idle machine the client, not the server, may
become the limit. The first request loads the
release into memory (Arrow builds every series' JSON at once); later releases are loaded in a
worker thread while the previous one keeps being served.

Target (>= 3,000 req/s with p99 < 100 ms on 2 cores):
{"met with " + ", ".join(met) if met else "not met in this measurement"}.
"""
    if not args.no_write:
        print(write_section("serve", md))


if __name__ == "__main__":
    main()
