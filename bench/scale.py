"""Scale benchmark: whole fleets end to end (ingest to publish) through the fast tier, with the
libraries people would otherwise use measured in the same run.

For each fleet size: ``steadycast synth`` makes a realistic fleet (faults planted), then
``steadycast ingest`` and ``steadycast run`` (tier "fast") each run in their own process:
wall, CPU (workers included), peak memory (all its processes together, and the largest).
Peers, on the
same data in the same run:

- statsforecast directly with the same models (SeasonalNaive, SES with optimised alpha,
  WindowAverage, HistoricAverage): ``cross_validation`` (the same 2 windows) + ``forecast``,
  on a sample of the fleet (its cost is linear in series);
- Prophet (fit + predict, one series at a time, as an analyst would) on a small sample.

    python bench/scale.py [--series 1000,10000,100000] [--days 28] [--frequency 1h]
    python bench/scale.py --series 1000000 --days 730 --frequency 1D --name scale_1m
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sqlite3
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WORK, Measured, machine, measure, today, write_section

STEADYCAST = [sys.executable, "-m", "steadycast.cli"]
PEER = """
import json, sys, time, warnings, resource
import pandas as pd
warnings.simplefilter("ignore")
from statsforecast import StatsForecast
from statsforecast.models import (HistoricAverage, SeasonalNaive,
    SimpleExponentialSmoothingOptimized, WindowAverage)
files, sample, freq, season, h = json.loads(sys.argv[1])
# The sample's rows only (a million-series fleet does not fit in pandas): ids from the first
# file, their rows from every file (a series may continue in the next one).
ids = sorted(pd.read_parquet(files[0], columns=["unique_id"])["unique_id"].unique())[:sample]
frame = pd.concat([pd.read_parquet(f, columns=["unique_id", "ds", "y"],
                                   filters=[("unique_id", "in", ids)]) for f in files])
frame = frame.drop_duplicates(["unique_id", "ds"])
frame = frame.sort_values(["unique_id", "ds"]).reset_index(drop=True)
# statsforecast needs regular series without gaps, as steadycast's prepare stage makes them.
full = frame.set_index("ds").groupby("unique_id")["y"].resample(freq).mean().reset_index()
full["y"] = full.groupby("unique_id")["y"].transform(lambda s: s.interpolate().bfill().ffill())
models = [SeasonalNaive(season_length=season), SimpleExponentialSmoothingOptimized(),
          WindowAverage(window_size=season), HistoricAverage()]
sf = StatsForecast(models=models, freq=freq, n_jobs=1)
started, cpu = time.perf_counter(), time.process_time()
sf.cross_validation(df=full, h=h, n_windows=2, step_size=h)
sf.forecast(df=full, h=h)
print(json.dumps({"series": len(ids), "wall_s": time.perf_counter() - started,
                  "cpu_s": time.process_time() - cpu,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
PROPHET = """
import json, logging, sys, time, warnings
import pandas as pd
warnings.simplefilter("ignore")
logging.getLogger("cmdstanpy").disabled = True
from prophet import Prophet
files, sample, freq, h = json.loads(sys.argv[1])
frame = pd.read_parquet(files[0], columns=["unique_id", "ds", "y"])
ids = sorted(frame["unique_id"].unique())[:sample]
started, cpu = time.perf_counter(), time.process_time()
for uid in ids:
    one = frame[frame["unique_id"] == uid][["ds", "y"]].drop_duplicates("ds").sort_values("ds")
    model = Prophet().fit(one)
    model.predict(model.make_future_dataframe(periods=h, freq=freq, include_history=False))
print(json.dumps({"series": len(ids), "wall_s": time.perf_counter() - started,
                  "cpu_s": time.process_time() - cpu}))
"""


def _checked(m: Measured, what: str) -> Measured:
    if m.returncode != 0:
        raise SystemExit(f"{what} failed ({m.returncode}):\n{m.stderr[-3000:]}")
    return m


def stages(ws: Path) -> dict[str, dict[str, Any]]:
    con = sqlite3.connect(ws / "control.sqlite")
    rows = con.execute("SELECT name, wall_s, cpu_s, peak_rss_mb, detail FROM stages").fetchall()
    con.close()
    return {
        name: {"wall_s": wall, "cpu_s": cpu, "peak_mb": peak, "detail": json.loads(detail or "{}")}
        for name, wall, cpu, peak, detail in rows
    }


def fleet(series: int, days: int, frequency: str) -> tuple[Path, dict[str, Any], float]:
    out = WORK / f"fleet_{series}_{days}_{frequency}"
    done = out / "synth.json"
    if done.exists():
        return out, json.loads(done.read_text()), 0.0
    shutil.rmtree(out, ignore_errors=True)
    made = _checked(
        measure(
            [
                *STEADYCAST,
                "synth",
                "--series",
                str(series),
                "--days",
                str(days),
                "--frequency",
                frequency,
                "-o",
                str(out),
                "--json",
            ]
        ),
        "synth",
    )
    return out, json.loads(done.read_text()), made.wall_s


def end_to_end(
    out: Path, info: dict[str, Any], partition_size: int, workers: int
) -> dict[str, Any]:
    ws = WORK / f"ws_{out.name}"
    shutil.rmtree(ws, ignore_errors=True)
    _checked(measure([*STEADYCAST, "init", str(ws)]), "init")
    pipeline = (out / "pipeline.toml").read_text()
    pipeline += (
        '\n[models]\ntier = "fast"\n'
        f"\n[forecast]\npartition_size = {partition_size}\nworkers = {workers}\n"
    )
    (ws / "pipelines" / "fleet.toml").write_text(pipeline)
    files = [str(out / f) for f in info["files"]]
    ingest = _checked(
        measure([*STEADYCAST, "ingest", "fleet", *files, "-w", str(ws), "--json"]), "ingest"
    )
    run = measure([*STEADYCAST, "run", "fleet", "-w", str(ws), "--json"])
    if run.returncode not in (0, 3):  # 3: held by its gate, still a complete run
        _checked(run, "run")
    result = json.loads(run.stdout)
    recorded = stages(ws)
    summary = {
        "series": info["series"],
        "rows": info["rows"],
        "ingest_wall_s": ingest.wall_s,
        "ingest_cpu_s": ingest.cpu_s,
        "ingest_peak_mb": ingest.peak_rss_mb,
        "run_wall_s": run.wall_s,
        "run_cpu_s": run.cpu_s,
        "run_peak_mb": run.peak_rss_mb,
        "run_tree_peak_mb": run.tree_peak_mb,
        "status": result.get("status"),
        "published_series": result.get("series"),
        "stages": {
            k: {"wall_s": v["wall_s"], "cpu_s": v["cpu_s"], "peak_mb": v["peak_mb"]}
            for k, v in recorded.items()
        },
    }
    summary["wall_s"] = ingest.wall_s + run.wall_s
    summary["cpu_s"] = ingest.cpu_s + run.cpu_s
    summary["ms_per_series"] = 1000 * summary["wall_s"] / info["series"]
    summary["forecast_ms_per_series"] = 1000 * recorded["forecast"]["wall_s"] / info["series"]
    # The largest single process: wait4 reports the command's and its reaped children's.
    summary["peak_mb"] = max(ingest.peak_rss_mb, run.peak_rss_mb)
    summary["tree_peak_mb"] = max(ingest.tree_peak_mb, run.tree_peak_mb)
    summary["checks"] = check_scores(ws, out)
    summary["release_mb"] = release_memory(ws)
    shutil.rmtree(ws, ignore_errors=True)
    return summary


RELEASE_MEMORY = """
import json, sys
from pathlib import Path
from steadycast.storage import releases
def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
release = releases.current(Path(sys.argv[1]) / "releases", "fleet")
before = rss()
frame = releases.read_forecasts(release)
print(json.dumps({"rows": len(frame), "mb": rss() - before}))
"""


def release_memory(ws: Path) -> dict[str, Any] | None:
    """What the current release costs in memory once read: the next run holds it besides its
    own forecasts (its gate compares them, its fallback uses them)."""
    done = measure([sys.executable, "-c", RELEASE_MEMORY, str(ws)])
    return json.loads(done.stdout) if done.returncode == 0 else None


def check_scores(ws: Path, out: Path) -> list[dict[str, Any]]:
    """Precision and recall of the run's data-quality checks against the planted faults."""
    import duckdb
    import pandas as pd

    from steadycast.synth import DEFAULT_MAPPING, score_checks

    con = duckdb.connect(str(ws / "store.duckdb"), read_only=True)
    findings = con.execute(
        'SELECT unique_id, "check", passed FROM check_results WHERE unique_id IS NOT NULL'
    ).fetchdf()
    con.close()
    truth = pd.read_parquet(out / "ground_truth.parquet")
    score = score_checks(truth, findings, DEFAULT_MAPPING)
    return [
        {k: (None if pd.isna(v) else v) for k, v in row.items()} for row in score.to_dict("records")
    ]


def peers(
    out: Path, info: dict[str, Any], sample: int, prophet_sample: int, season: int, horizon: int
) -> dict[str, Any]:
    files = [str(out / f) for f in info["files"]]
    freq = {"1h": "h", "30min": "30min", "1D": "D"}[info["frequency"]]
    found: dict[str, Any] = {}
    sf = _checked(
        measure([sys.executable, "-c", PEER, json.dumps([files, sample, freq, season, horizon])]),
        "statsforecast",
    )
    found["statsforecast"] = json.loads(sf.stdout)
    if prophet_sample:
        try:
            import prophet  # noqa: F401
        except ImportError:
            found["prophet"] = None
        else:
            pr = _checked(
                measure(
                    [
                        sys.executable,
                        "-c",
                        PROPHET,
                        json.dumps([files, prophet_sample, freq, horizon]),
                    ]
                ),
                "prophet",
            )
            found["prophet"] = json.loads(pr.stdout)
    return found


def markdown(args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    command = (
        f"python bench/scale.py --series {args.series} --days {args.days} "
        f"--frequency {args.frequency} --name {args.name}"
    )
    lines = [
        f"## Scale: {args.frequency} fleets, {args.days} days of history, fast tier, end to end",
        "",
        f"{today()} on {machine()}. Reproduce: `{command}` (part of `make bench`).",
        "",
        "Each fleet is made by `steadycast synth` (daily and weekly cycles, holidays, household",
        "heterogeneity, planted faults), then `steadycast ingest` (all files) and `steadycast run`",
        f"(tier `fast`, partitions of {args.partition_size} series, {args.workers or 'one per core'}",
        "workers: snapshot, data-quality checks, backtest of 2 windows, selection, forecast,",
        "gate, publish), each in its own process. Peak memory: the most the command held at once",
        "in all its processes together (partition processes and model workers included, sampled",
        "every 0.2 s), and its largest single process.",
        "",
        "| series | rows | ingest | run | end to end | per series | forecast stage per series | CPU | peak memory, all processes | largest process | status |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['series']:,} | {r['rows']:,} | {r['ingest_wall_s']:.1f} s | {r['run_wall_s']:.1f} s "
            f"| {r['wall_s']:.1f} s | {r['ms_per_series']:.2f} ms | {r['forecast_ms_per_series']:.2f} ms "
            f"| {r['cpu_s']:.0f} s | {r['tree_peak_mb']:,.0f} MB | {r['peak_mb']:,.0f} MB "
            f"| {r['status']} |"
        )
    if len(rows) > 1:
        base = rows[0]["ms_per_series"]
        spread = max(abs(r["ms_per_series"] / base - 1) for r in rows)
        lines += [
            "",
            f"Time per series from {rows[0]['series']:,} to {rows[-1]['series']:,} series: largest "
            f"departure from the smallest fleet's {spread:.0%} (target: within 25%).",
        ]
        # What each further series costs, without the fixed cost every run pays.
        steps = [
            f"{a['series']:,} to {b['series']:,}: "
            f"{1000 * (b['wall_s'] - a['wall_s']) / (b['series'] - a['series']):.2f} ms"
            for a, b in itertools.pairwise(rows)
        ]
        fixed = rows[0]["wall_s"] - rows[0]["series"] * (
            (rows[1]["wall_s"] - rows[0]["wall_s"]) / (rows[1]["series"] - rows[0]["series"])
        )
        lines += [
            "",
            "Marginal cost per series (the difference in end-to-end time over the difference in",
            f"series): {'; '.join(steps)}. Fixed cost of a run, extrapolated to zero series: "
            f"{fixed:.1f} s.",
        ]
    sized = [r for r in rows if r.get("release_mb")]
    if sized:
        lines += [
            "",
            "The published release read back into memory (what the next run holds besides its own",
            "forecasts, for its gate and fallback): "
            + "; ".join(
                f"{r['series']:,} series, {r['release_mb']['rows']:,} rows: "
                f"{r['release_mb']['mb']:,.0f} MB"
                for r in sized
            )
            + ".",
        ]
    lines += ["", "Where the time goes (seconds, per stage of the run):", ""]
    names = list(rows[0]["stages"])
    lines.append("| series | ingest | " + " | ".join(names) + " |")
    lines.append("| ---: | ---: | " + " | ".join("---:" for _ in names) + " |")
    for r in rows:
        cells = " | ".join(f"{r['stages'].get(n, {}).get('wall_s', 0):.1f}" for n in names)
        lines.append(f"| {r['series']:,} | {r['ingest_wall_s']:.1f} | {cells} |")
    lines += ["", "Peers on the same data, in the same run:", ""]
    lines.append(
        "| series | peer | sample | peer per series | steadycast forecast stage per series | ratio |"
    )
    lines.append("| ---: | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        ours = r["forecast_ms_per_series"]
        for name, found in r["peers"].items():
            if not found:
                lines.append(f"| {r['series']:,} | {name} | not installed | | | |")
                continue
            per = 1000 * found["wall_s"] / found["series"]
            lines.append(
                f"| {r['series']:,} | {name} | {found['series']:,} | {per:.2f} ms | {ours:.2f} ms "
                f"| {ours / per:.2f}x |"
            )
    last = rows[-1]
    if last.get("checks"):
        keys = ["fault", "check", "planted", "flagged", "precision", "recall"]
        lines += [
            "",
            f"Data-quality checks against the planted faults ({last['series']:,} series, the",
            "pipeline's default checks; series level, see docs/synth.md):",
            "",
            "| " + " | ".join(keys) + " |",
            "| " + " | ".join("---" for _ in keys) + " |",
        ]
        for score in last["checks"]:
            cells = [
                f"{score[k]:.2f}" if isinstance(score.get(k), float) else str(score.get(k, ""))
                for k in keys
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "statsforecast runs the same four models (`cross_validation` with the same 2 windows,",
        "then `forecast`, `n_jobs=1`) on series already made regular; steadycast's forecast stage",
        "also prepares the series, profiles and routes them, validates every model's output,",
        "selects per series (ensembles included) and records every score. Prophet fits and",
        "predicts one series at a time.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", default="1000,10000,100000")
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--frequency", default="1h")
    parser.add_argument("--partition-size", type=int, default=2500)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--peer-sample", type=int, default=2000)
    parser.add_argument("--prophet-sample", type=int, default=20)
    parser.add_argument("--name", default="scale")
    parser.add_argument("--keep", action="store_true", help="keep the generated fleets")
    args = parser.parse_args()
    rows = []
    for n in [int(s) for s in args.series.split(",")]:
        started = time.perf_counter()
        out, info, synth_s = fleet(n, args.days, args.frequency)
        row = end_to_end(out, info, args.partition_size, args.workers)
        series_table = tomllib.loads((out / "pipeline.toml").read_text())["series"]
        season, horizon = series_table["season_lengths"][0], series_table["horizon"]
        row["peers"] = peers(
            out, info, min(n, args.peer_sample), args.prophet_sample, season, horizon
        )
        row["synth_s"] = synth_s
        rows.append(row)
        print(json.dumps(row, default=str), flush=True)
        print(f"{n:,} series done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    path = write_section(args.name, markdown(args, rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
