"""Ingest benchmark: steadycast's ingest against a plain DuckDB read_csv of the same file.

Both run in their own child process, one after the other, alternating, so each figure has its
peer from the same minute on the same (noisy) machine.

    python bench/ingest.py [--rows 20000000] [--repeats 2] [--frame-rows 5000000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest_postgres
from common import WORK, machine, measure, today, write_section

PIPELINE = """\
[source]
id_column = "meter_id"
time_column = "timestamp"
value_column = "kwh"
timezone = "UTC"

[series]
frequency = "1h"
horizon = 24
season_lengths = [24, 168]
min_value = 0
"""

PLAIN = """
import duckdb, sys
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE observations AS SELECT * FROM read_csv(?)", [sys.argv[2]])
print(con.execute("SELECT count(*) FROM observations").fetchone()[0])
"""


# Ingest of the same rows from a file and from a DataFrame, in one process, alternating order
# per repeat; the frame is read from the CSV before the clock starts (as a notebook holds it).
FRAME_VS_FILE = """
import json, shutil, sys, time
from pathlib import Path
import pandas as pd
import steadycast
from steadycast.workspace import Workspace
root, path, toml, frame_first = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
frame = pd.read_csv(path, dtype=str)
timings = {}
for kind in (["frame", "file"] if frame_first else ["file", "frame"]):
    shutil.rmtree(root / kind, ignore_errors=True)
    ws = Workspace.init(root / kind)
    (ws.pipelines_dir / "bench.toml").write_text(toml)
    started = time.perf_counter()
    done = steadycast.ingest(ws, "bench", frame if kind == "frame" else [Path(path)])
    timings[kind] = time.perf_counter() - started
    timings[kind + "_rows"] = sum(b.rows_stored for b in done)
print(json.dumps(timings))
"""


def generate(path: Path, rows: int) -> None:
    """Meter-like rows: 20,000 meters, hourly, with one row in 10,000 bad (a text value)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    meters = 20_000
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (
            SELECT 'MTR' || lpad(CAST(i % {meters} AS VARCHAR), 7, '0') AS meter_id,
                   strftime(TIMESTAMP '2024-01-01' + INTERVAL (i // {meters}) HOUR, '%Y-%m-%d %H:%M:%S') AS timestamp,
                   CASE WHEN i % 10000 = 4321 THEN 'ERR'
                        ELSE CAST(round(0.2 + 1.5 * random(), 3) AS VARCHAR) END AS kwh
            FROM range({rows}) t(i)
        ) TO '{path}' (HEADER)
        """
    )
    con.close()


def run(rows: int, repeats: int) -> dict[str, object]:
    data = WORK / f"ingest_{rows}.csv"
    generate(data, rows)
    size_mb = data.stat().st_size / 1024**2
    plain_runs, ours_runs = [], []
    for i in range(repeats):
        target = WORK / f"plain_{i}.duckdb"
        target.unlink(missing_ok=True)
        plain = measure([sys.executable, "-c", PLAIN, str(target), str(data)])
        if plain.returncode != 0:
            raise SystemExit(f"plain DuckDB load failed: {plain.stderr}")
        target.unlink(missing_ok=True)
        plain_runs.append(plain)

        ws = WORK / f"ws_{i}"
        shutil.rmtree(ws, ignore_errors=True)
        init = measure([sys.executable, "-m", "steadycast.cli", "init", str(ws)])
        if init.returncode != 0:
            raise SystemExit(init.stderr)
        (ws / "pipelines" / "bench.toml").write_text(PIPELINE)
        ours = measure(
            [
                sys.executable,
                "-m",
                "steadycast.cli",
                "ingest",
                "bench",
                str(data),
                "-w",
                str(ws),
                "--json",
            ]
        )
        if ours.returncode != 0:
            raise SystemExit(f"steadycast ingest failed: {ours.stderr}")
        batch = json.loads(ours.stdout)["batches"][0]
        assert batch["rows_read"] == rows
        shutil.rmtree(ws, ignore_errors=True)
        ours_runs.append(ours)
    plain_wall = statistics.median(m.wall_s for m in plain_runs)
    ours_wall = statistics.median(m.wall_s for m in ours_runs)
    return {
        "rows": rows,
        "file_mb": round(size_mb),
        "plain_wall_s": round(plain_wall, 2),
        "plain_peak_mb": round(max(m.peak_rss_mb for m in plain_runs)),
        "ours_wall_s": round(ours_wall, 2),
        "ours_cpu_s": round(statistics.median(m.cpu_s for m in ours_runs), 2),
        "ours_peak_mb": round(max(m.peak_rss_mb for m in ours_runs)),
        "ratio": round(ours_wall / plain_wall, 2),
        "rows_per_s": round(rows / ours_wall),
        "repeats": repeats,
        "quarantined": batch["rows_quarantined"],
    }


def frame_vs_file(rows: int, repeats: int) -> dict[str, object]:
    """``steadycast.ingest`` of the same rows from a CSV file and from a pandas DataFrame."""
    data = WORK / f"ingest_{rows}.csv"
    generate(data, rows)
    runs = []
    for i in range(repeats):
        script = [sys.executable, "-c", FRAME_VS_FILE, str(WORK / "frame_ws"), str(data)]
        done = measure([*script, PIPELINE, str(i % 2)])
        if done.returncode != 0:
            raise SystemExit(f"frame ingest failed: {done.stderr}")
        runs.append(json.loads(done.stdout))
    shutil.rmtree(WORK / "frame_ws", ignore_errors=True)
    frame = statistics.median(r["frame"] for r in runs)
    file = statistics.median(r["file"] for r in runs)
    assert all(r["frame_rows"] == r["file_rows"] for r in runs), runs
    return {
        "frame_rows": rows,
        "frame_s": round(frame, 2),
        "file_s": round(file, 2),
        "frame_ratio": round(frame / file, 2),
        "frame_repeats": repeats,
    }


def postgres_vs_file(rows: int, repeats: int) -> dict[str, object]:
    """Ingest from a PostgreSQL query against the same rows from the CSV file
    (bench/ingest_postgres.py)."""
    data = WORK / f"ingest_{rows}.csv"
    generate(data, rows)
    return ingest_postgres.query_vs_file(data, PIPELINE, repeats)


def markdown(r: dict[str, object]) -> str:
    return f"""## Ingest

{today()} on {machine()}. Reproduce: `python bench/ingest.py --rows {r["rows"]} --repeats {r["repeats"]}`
(part of `make bench`).

A generated CSV of {r["rows"]:,} rows ({r["file_mb"]} MB; 20,000 meters, hourly, one row in 10,000
with a text value) loaded by `steadycast ingest` (parse, UTC placement, row checks, duplicate
check, quarantine of {r["quarantined"]:,} rows, parity, one transaction into the workspace store),
and, in the same run, by plain DuckDB `CREATE TABLE ... AS SELECT * FROM read_csv(...)` into a
database file. Medians of {r["repeats"]} alternating runs, each in its own process.

| | wall | peak memory |
| --- | ---: | ---: |
| plain DuckDB `read_csv` | {r["plain_wall_s"]} s | {r["plain_peak_mb"]} MB |
| `steadycast ingest` | {r["ours_wall_s"]} s (CPU {r["ours_cpu_s"]} s) | {r["ours_peak_mb"]} MB |
| **ratio** (target at most 2x; memory under 2 GB) | **{r["ratio"]}x** | |

Throughput: {r["rows_per_s"]:,} rows/s.

From a DataFrame (`steadycast.ingest(ws, "bench", df)`, the same checks, quarantine and ledger)
against the same rows from the CSV file, both in one process (the frame read beforehand, as a
notebook holds it; medians of {r["frame_repeats"]}, order alternated), {r["frame_rows"]:,} rows:
frame {r["frame_s"]} s, file {r["file_s"]} s, **ratio {r["frame_ratio"]}x**.

Where the time goes (profiled on this machine, 2026-11-26): the plain load is a parse (about
0.9 s) and a compressed write (about 4.3 s). steadycast parses once into a narrow staging table
while it checks every row (about 4 s), writes the good rows (about 3.3 s, most of it compressing
the series ids), and proves the batch has no repeated (series, time) key with one bit per series
and time step (about 0.8 s; the exact key comparison runs only when that proof fails). The content
hash runs in a thread during the read. What is left above the plain load is the staging table
and Python's start-up (0.7 s). Runs on this shared machine vary by about 10% between repeats.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--frame-rows", type=int, default=5_000_000, help="rows of the frame case")
    parser.add_argument("--pg-rows", type=int, default=1_000_000, help="rows of the query case")
    args = parser.parse_args()
    result = run(args.rows, args.repeats)
    result.update(frame_vs_file(args.frame_rows, max(args.repeats, 2)))
    result.update(postgres_vs_file(args.pg_rows, max(args.repeats, 2)))
    print(json.dumps(result, indent=2))
    path = write_section("ingest", markdown(result) + ingest_postgres.markdown(result))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
