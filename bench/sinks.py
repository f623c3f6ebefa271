"""Sink benchmark: what writing a release to each sink costs, per million forecast rows.

A release of R rows shaped like the real ones (48 hours of forecasts per series, two interval
levels, the provenance columns, ``release_id`` and ``run_id`` in every row) is written by each
sink, in this process, through the sink's own ``write`` (what a delivery calls). Each sink is
measured beside its peer: the same table written with ``pyarrow.parquet.write_table`` to a local
file, the least any Parquet writer can do. The object-storage figures come from moto's server on
127.0.0.1 (a Python process holding objects in memory), beside pyarrow writing the same file
straight to that server: their difference is the sink's own overhead, the rest is the store.

Each sink is a function ``(table, workdir, repeats) -> list[Row]`` listed in ``BENCHES``.

    python bench/sinks.py [--rows 1000000] [--repeats 3] [--only parquet,postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WORK, machine, today, write_section

from steadycast.config import ParquetSinkConfig
from steadycast.sinks.base import ReleaseRows
from steadycast.sinks.parquet import ParquetSink

HORIZON = 48
PIPELINE = "bench"
RELEASE_ID = "bench-20240311T060000Z-0000"


@dataclass(frozen=True)
class Row:
    """One measured writer: the median seconds of its repeats for the whole release."""

    sink: str
    seconds: float
    peer_seconds: float | None = None  # the peer measured in the same function, for a ratio
    note: str = ""


def release_table(rows: int) -> pa.Table:
    """A release of ``rows`` rows with the columns ``frames.read_forecast`` gives a sink."""
    series = max(1, rows // HORIZON)
    n = series * HORIZON
    rng = np.random.default_rng(0)
    ids = np.repeat(np.array([f"meter-{i:07d}" for i in range(series)], dtype=object), HORIZON)
    start = np.datetime64("2024-03-11T00:00", "us")
    ds = start + np.tile(np.arange(HORIZON), series).astype("timedelta64[h]")
    yhat = rng.gamma(2.0, 1.5, n)
    spread = rng.uniform(0.1, 0.5, n) * yhat
    return pa.table(
        {
            "unique_id": pa.array(ids, pa.string()),
            "ds": pa.array(ds, pa.timestamp("us")),
            "yhat": yhat,
            "model": pa.array(np.where(np.arange(n) % 3 == 0, "AutoETS", "SeasonalNaive")),
            "yhat_lo_80": yhat - spread,
            "yhat_hi_80": yhat + spread,
            "yhat_lo_95": yhat - 1.6 * spread,
            "yhat_hi_95": yhat + 1.6 * spread,
            "source": pa.array(["selected"] * n),
            "backtest_score": np.repeat(rng.uniform(0.5, 1.5, series), HORIZON),
            "release_id": pa.array([RELEASE_ID] * n),
            "run_id": pa.array(["bench-run"] * n),
        }
    )


def timed(action: Callable[[], object], repeats: int) -> float:
    """The median wall seconds of ``repeats`` calls."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def peer(table: pa.Table, workdir: Path, repeats: int) -> float:
    """``pyarrow.parquet.write_table`` of the same table to a local file, zstd like the sink."""
    target = workdir / "peer.parquet"
    return timed(lambda: pq.write_table(table, target, compression="zstd"), repeats)


def parquet_local(table: pa.Table, workdir: Path, repeats: int) -> list[Row]:
    """The Parquet sink into a local folder (temporary file, fsync, rename; then the marker)."""
    release = ReleaseRows(PIPELINE, RELEASE_ID, "bench-run", table)
    sink = ParquetSink(ParquetSinkConfig(kind="parquet", path=str(workdir / "lake")))
    seconds = timed(lambda: sink.write(release), repeats)
    return [Row("parquet sink, local folder", seconds, peer(table, workdir, repeats))]


@contextlib.contextmanager
def moto_server() -> Iterator[str | None]:
    """moto's S3 server on a free 127.0.0.1 port, or None when moto is not installed."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{endpoint}/moto-api/"):
                break
            time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def parquet_s3(table: pa.Table, workdir: Path, repeats: int) -> list[Row]:
    """The Parquet sink onto object storage (moto's server on 127.0.0.1)."""
    from pyarrow import fs as pafs

    with moto_server() as endpoint:
        if endpoint is None:
            return [Row("parquet sink, object storage", float("nan"), note="moto not installed")]
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench-secret",
                "AWS_REGION": "us-east-1",
            }
        )
        host = endpoint.split("://", 1)[1]
        s3 = pafs.S3FileSystem(
            endpoint_override=host,
            scheme="http",
            access_key="bench",
            secret_key="bench-secret",
            region="us-east-1",
            allow_bucket_creation=True,
        )
        s3.create_dir("bench-sink")
        release = ReleaseRows(PIPELINE, RELEASE_ID, "bench-run", table)
        sink = ParquetSink(ParquetSinkConfig(kind="parquet", path="s3://bench-sink/forecasts"))
        seconds = timed(lambda: sink.write(release), repeats)
        straight = timed(
            lambda: pq.write_table(
                table, "bench-sink/straight/part-0.parquet", filesystem=s3, compression="zstd"
            ),
            repeats,
        )
    local = peer(table, workdir, repeats)
    note = "moto's server (in-memory, Python) on 127.0.0.1"
    return [
        Row("parquet sink, object storage", seconds, local, note),
        Row(
            "(pyarrow write_table straight to object storage)",
            straight,
            local,
            "the store's own cost: no marker, no atomicity",
        ),
    ]


# Each sink's measurement; a sink added to the product adds its function here.
BENCHES: list[Callable[[pa.Table, Path, int], list[Row]]] = [parquet_local, parquet_s3]


def _postgres_table(table: pa.Table, workdir: Path, repeats: int) -> list[Row]:
    """The PostgreSQL sink (bench/sinks_postgres.py: a server started for the benchmark)."""
    from sinks_postgres import postgres_table

    return [Row("postgresql sink, table", *postgres_table(table, repeats, timed))]


BENCHES.append(_postgres_table)


def per_million(seconds: float, rows: int) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1e6 / rows:.2f}"


def rate(seconds: float, rows: int) -> str:
    return "n/a" if seconds != seconds or seconds == 0 else f"{rows / seconds:,.0f}"


def section(rows: int, measured: list[Row], repeats: int, args: str, size_mb: float) -> str:
    lines = [
        "## Sinks: each published release written to a table or a dataset",
        "",
        f"{today()} on {machine()}.",
        "",
        f"Command: `python bench/sinks.py{args}`",
        "",
        f"One release of {rows:,} forecast rows ({rows // HORIZON:,} series x {HORIZON} hours, "
        f"12 columns with intervals, provenance, `release_id` and `run_id`; {size_mb:.1f} MB as "
        f"zstd Parquet), written by each sink's `write` in one process; median of {repeats}. "
        "The peer is `pyarrow.parquet.write_table` of the same table to a local file (zstd), "
        "measured in the same function.",
        "",
        "| sink | seconds | rows/s | s per million rows | peer s | sink / peer | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in measured:
        ratio = (
            f"{r.seconds / r.peer_seconds:.2f}x"
            if r.peer_seconds and r.seconds == r.seconds
            else "n/a"
        )
        peer_s = f"{r.peer_seconds:.3f}" if r.peer_seconds else "n/a"
        lines.append(
            f"| {r.sink} | {r.seconds:.3f} | {rate(r.seconds, rows)} | "
            f"{per_million(r.seconds, rows)} | {peer_s} | {ratio} | {r.note} |"
        )
    lines += [
        "",
        "In a folder the sink writes a hidden temporary file, flushes it to disk (fsync) and "
        "renames it, then the small `_CURRENT` marker the same way: what it costs over the peer "
        "is the fsync and the marker, the price of a release that survives a crash whole. On "
        "object storage it serialises the release in memory first (so a failure never leaves a "
        "partial object), then uploads it (a large file as a multipart upload, visible only once "
        "complete) and the marker: compare it with the straight upload beside it, the rest is "
        "the store (here moto, a Python server on the same 2 cores).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated names: parquet,postgres")
    parser.add_argument("--no-write", action="store_true", help="print only, keep results/")
    args = parser.parse_args()
    only = [n for n in args.only.split(",") if n]
    chosen = [b for b in BENCHES if not only or any(n in b.__name__ for n in only)]
    workdir = WORK / "sinks"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    table = release_table(args.rows)
    rows = table.num_rows
    measured = [row for bench in chosen for row in bench(table, workdir, args.repeats)]
    pq.write_table(table, workdir / "size.parquet", compression="zstd")
    size_mb = (workdir / "size.parquet").stat().st_size / 1024**2
    given = (("rows", args.rows, 1_000_000), ("repeats", args.repeats, 3), ("only", args.only, ""))
    shown = "".join(f" --{k} {v}" for k, v, default in given if v != default)
    text = section(rows, measured, args.repeats, shown, size_mb)
    print(text)
    if not args.no_write:
        print(f"wrote {write_section('sinks', text)}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
