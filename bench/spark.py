"""Spark benchmark: one run of a pipeline on the local engine and on Spark in local mode.

A generated fleet (``steadycast.synth``, hourly, no planted faults) is ingested once; two copies
of that workspace then run ``steadycast run`` in child processes, one with the local engine and
one with ``--engine spark --spark-master local[2]``, fast-tier candidates (FastSeasonalNaive,
FastSES), partitions of 500 series. The two releases must be identical (same content hash) or
the benchmark fails. Peak memory is the sum of the resident memory of every process of the run
(driver, JVM, Python workers, model workers), sampled every 0.2 s; CPU is the sum over them.
A third child starts and stops a bare Spark session, to say how much of the overhead that is.

    python bench/spark.py [--series 10000] [--days 28] [--master local[2]]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WORK, machine, today, write_section

from steadycast.ingestion.batch import ingest
from steadycast.storage import releases
from steadycast.synth import FaultRates, generate_fleet, pipeline_toml
from steadycast.workspace import Workspace

CANDIDATES = ["FastSeasonalNaive", "FastSES"]
PARTITION = 500

SESSION = """
import json, sys, time
t = time.perf_counter()
from pyspark.sql import SparkSession
spark = SparkSession.builder.master(sys.argv[1]).config("spark.ui.showConsoleProgress", "false").getOrCreate()
spark.range(10).count()
started = time.perf_counter() - t
t = time.perf_counter()
spark.stop()
print(json.dumps({"start_s": started, "stop_s": time.perf_counter() - t}))
"""


def spark_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }


def role(proc: psutil.Process, root: int) -> str:
    """What a process of a run is, for the CPU breakdown."""
    if proc.pid == root:
        return "driver"
    cmd = " ".join(proc.cmdline())
    if "steadycast.models._worker" in cmd:
        return "model workers"
    if "java" in proc.name() or "org.apache.spark" in cmd:
        return "JVM"
    if "pyspark" in cmd:
        return "Spark Python workers"
    return "other"


def watched(cmd: list[str]) -> dict[str, Any]:
    """Run a command; wall time, and CPU (by role) and peak memory over its process tree."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=spark_env())
    root = psutil.Process(proc.pid)
    cpu: dict[int, tuple[str, float]] = {}
    peak_sum = peak_one = 0.0
    while proc.poll() is None:
        rss = []
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        for p in tree:
            try:
                t = p.cpu_times()
                kind = cpu[p.pid][0] if p.pid in cpu else role(p, proc.pid)
                cpu[p.pid] = (kind, t.user + t.system)
                rss.append(p.memory_info().rss / 2**20)
            except psutil.Error:
                continue
        peak_sum, peak_one = max(peak_sum, sum(rss)), max([peak_one, *rss])
        time.sleep(0.2)
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    by_role: dict[str, float] = {}
    for kind, seconds in cpu.values():
        by_role[kind] = by_role.get(kind, 0.0) + seconds
    return {
        "wall_s": wall,
        "cpu_s": sum(by_role.values()),
        "cpu_by_role": by_role,
        "peak_tree_mb": peak_sum,
        "peak_process_mb": peak_one,
        "result": json.loads(out),
    }


def fleet(series: int, days: int) -> Path:
    out = WORK / f"spark_fleet_{series}x{days}d"
    if not (out / "synth.json").exists():
        generate_fleet(
            out, series=series, days=days, frequency="1h", faults=FaultRates.none(), overwrite=True
        )
    return out


def workspace(data: Path) -> Path:
    base = WORK / "spark_ws"
    shutil.rmtree(base, ignore_errors=True)
    ws = Workspace.init(base)
    quoted = ", ".join(f'"{c}"' for c in CANDIDATES)
    text = pipeline_toml("1h", "UTC") + f"\n[models]\ncandidates = [{quoted}]\n"
    text += f"\n[forecast]\npartition_size = {PARTITION}\n"
    (ws.pipelines_dir / "fleet.toml").write_text(text)
    ingest(ws, "fleet", sorted((data / "data").glob("*.parquet")))
    return base


def run(base: Path, name: str, *engine: str) -> dict[str, Any]:
    target = WORK / f"spark_ws_{name}"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(base, target)
    cmd = [sys.executable, "-m", "steadycast.cli", "run", "fleet", "-w", str(target), "--json"]
    figures = watched([*cmd, *engine])
    stages = {s["name"]: s for s in figures["result"]["stages"]}
    figures["forecast_wall_s"] = stages["forecast"]["wall_s"]
    figures["forecast_cpu_s"] = stages["forecast"]["cpu_s"]
    release = releases.current(Workspace.open(target).releases_dir, "fleet")
    figures["content_sha256"] = release.manifest["content_sha256"] if release else None
    print(name, json.dumps({k: v for k, v in figures.items() if k != "result"}), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    base = workspace(fleet(args.series, args.days))
    local = run(base, "local")
    spark = run(base, "spark", "--engine", "spark", "--spark-master", args.master)
    if local["content_sha256"] is None or local["content_sha256"] != spark["content_sha256"]:
        raise SystemExit("the local and the Spark engine published different releases")
    bare = watched([sys.executable, "-c", SESSION, args.master])
    session = {**bare["result"], "jvm_cpu_s": bare["cpu_by_role"].get("JVM", 0.0)}
    ratio = spark["wall_s"] / local["wall_s"]
    stage_ratio = spark["forecast_wall_s"] / local["forecast_wall_s"]
    rows = [("local engine", local), (f"spark engine, `{args.master}`", spark)]
    table = "\n".join(
        f"| {label} | {f['wall_s']:.1f} s | {f['forecast_wall_s']:.1f} s | {f['cpu_s']:.1f} s | "
        f"{f['peak_tree_mb']:.0f} MB | {f['peak_process_mb']:.0f} MB |"
        for label, f in rows
    )
    roles = ["driver", "Spark Python workers", "model workers", "JVM"]
    breakdown = "\n".join(
        f"| {label} | " + " | ".join(f"{f['cpu_by_role'].get(r, 0.0):.1f} s" for r in roles) + " |"
        for label, f in rows
    )
    lcpu, scpu = local["cpu_by_role"], spark["cpu_by_role"]
    rows_in = args.series * args.days * 24
    jvm_work = max(0.0, scpu.get("JVM", 0.0) - session["jvm_cpu_s"])
    cpu_ratio = spark["cpu_s"] / local["cpu_s"]
    if stage_ratio < 1:
        verdict = (
            f"Here running the per-series work on two cores at once outweighs what Spark adds "
            f"(CPU {cpu_ratio:.2f}x, wall {ratio:.2f}x)."
        )
    else:
        verdict = (
            f"On this shared two-core machine a run is bound by total CPU, and Spark adds CPU "
            f"({cpu_ratio:.2f}x) that one machine's two cores cannot absorb, so the wall time "
            f"follows ({ratio:.2f}x). Spark pays off when the per-series work needs more cores "
            "than one machine has: its start-up is paid once per run, and its per-row work is "
            "spread over the cluster with the rest."
        )
    series = args.series
    write_section(
        "spark",
        f"""## Spark engine: the same run on the local engine and on Spark in local mode

{today()} on {machine()}. Reproduce: `python bench/spark.py --series {series} --days {args.days}`
(part of `make bench`).

{series:,} generated hourly series (`steadycast.synth`, {args.days} days, no planted faults),
candidates {", ".join(CANDIDATES)}, horizon 24, 2 backtest windows, partitions of {PARTITION}
series ({-(-series // PARTITION)} partitions). `steadycast run` in a child process on two copies of
the same workspace: the local engine (2 model workers), then `--engine spark --spark-master
{args.master}`. Both published the same release (content hash `{local["content_sha256"][:12]}`).
Wall is the whole command; the forecast stage is where the engines differ (the other stages are
the same code on the driver). CPU and peak memory are over every process of the run (driver, JVM,
Spark Python workers, model workers), sampled every 0.2 s.

| engine | wall | forecast stage | CPU | peak memory, all processes | largest process |
| --- | ---: | ---: | ---: | ---: | ---: |
{table}
| **ratio** spark / local | **{ratio:.2f}x** | **{stage_ratio:.2f}x** | | | |

CPU by process:

| engine | {" | ".join(roles)} |
| --- | ---: | ---: | ---: | ---: |
{breakdown}

Where the difference comes from:

- **The per-series work** around the models (prepare, profile, backtest bookkeeping, selection,
  validation, writing a partition): the local engine does it in the driver, on one thread (its
  driver used {lcpu.get("driver", 0):.0f} s of CPU, snapshot, checks and publish included); the
  Spark engine in two Spark Python workers at once ({scpu.get("Spark Python workers", 0):.0f} s,
  Arrow conversion and one import of steadycast per worker included), leaving its driver
  {scpu.get("driver", 0):.0f} s.
- **Model code** does the same work on both: {lcpu.get("model workers", 0):.0f} s and
  {scpu.get("model workers", 0):.0f} s of model-worker CPU.
- **The JVM** is what the local engine does not have: {scpu.get("JVM", 0):.0f} s of CPU. Starting
  it and a session took {session["jvm_cpu_s"]:.0f} s of CPU ({session["start_s"]:.1f} s of wall,
  stopping {session["stop_s"]:.1f} s) in a bare child process: a fixed cost per run. The other
  {jvm_work:.0f} s are the run's own work, most of it growing with the fleet: reading the
  snapshot, the shuffle that puts each partition in one task, Arrow to and from Python; about
  {jvm_work / rows_in * 1e6:.1f} µs per row of history ({rows_in:,} rows).
- **Memory** is higher by the JVM and a second layer of Python processes; that difference does
  not grow with the fleet, since each task holds one partition.

{verdict} The machine is shared with other work: compare the ratios, not the seconds.
""",
    )
    print(json.dumps({"ratio": ratio, "stage_ratio": stage_ratio, "session": session}, indent=2))


if __name__ == "__main__":
    main()
