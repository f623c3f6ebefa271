"""Scale benchmark: whole fleets end to end (ingest to publish) through the fast tier, with the
accuracy of what was published and the libraries people would otherwise use measured in the
same run.

For each fleet size: ``steadycast synth`` makes a realistic fleet (faults planted) one horizon
longer than ``--days``; that last horizon is held out (never ingested), then ``steadycast
ingest`` and ``steadycast run`` (tier "fast", its default pool) each run in their own process:
wall, CPU (workers included), peak memory (all its processes together, and the largest), and
the forecast stage's pace in its first and last tenth (a run that slows as it goes shows). The
published forecasts of a sample of series are scored against the held-out readings: MASE (scale:
the in-sample seasonal naive error at the first season) beside seasonal naive's own forecast.
Peers, on the
same data in the same run:

- statsforecast directly with the pool's models it has (SeasonalNaive and the standard Theta
  method; Card has no statsforecast twin): ``cross_validation`` (the same 3 windows) +
  ``forecast``, on a sample of the fleet (its cost is linear in series);
- Prophet (fit + predict, one series at a time, as an analyst would) on a small sample.

    python bench/scale.py [--series 1000,10000,100000] [--days 28] [--frequency 1h]
    python bench/scale.py --series 10000,100000 --days 730 --frequency 1D --name scale_1d
    python bench/scale.py --series 1000000 --days 730 --frequency 1D --name scale_1m
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shutil
import sqlite3
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WORK, Measured, machine, measure, today, write_section

from steadycast.config import BacktestConfig, ModelsConfig

STEADYCAST = [sys.executable, "-m", "steadycast.cli"]
FAST_POOL = ModelsConfig().fast_candidates
BACKTEST_WINDOWS = BacktestConfig().windows
PEER = """
import json, sys, time, warnings, resource
import pandas as pd
warnings.simplefilter("ignore")
from statsforecast import StatsForecast
from statsforecast.models import SeasonalNaive, Theta
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
models = [SeasonalNaive(season_length=season), Theta(season_length=season)]
sf = StatsForecast(models=models, freq=freq, n_jobs=1)
started, cpu = time.perf_counter(), time.process_time()
sf.cross_validation(df=full, h=h, n_windows=3, step_size=h)
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
    """The fleet of ``days`` days plus one day-rounded horizon to hold out (cached)."""
    days += holdout_days(frequency)
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


def holdout_days(frequency: str) -> int:
    """Whole days covering one horizon of the synthetic pipeline at ``frequency``."""
    import math

    import pandas as pd

    from steadycast.synth.fleet import _SERIES_SETTINGS

    horizon = _SERIES_SETTINGS[frequency][0]
    return math.ceil(
        horizon * pd.Timedelta(pd.tseries.frequencies.to_offset(frequency)).total_seconds() / 86400
    )


def hold_out(out: Path, info: dict[str, Any], sample: int) -> tuple[list[str], Path, Path, int]:
    """Cut the fleet's last horizon off every file: the files to ingest, and the held-out
    readings and the history of up to ``sample`` series of the first data file (by id), for
    scoring. One file at a time, so memory stays bounded by the generator's file size."""
    import pandas as pd
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    settings = tomllib.loads((out / "pipeline.toml").read_text())["series"]
    horizon, season = settings["horizon"], settings["season_lengths"][0]
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(settings["frequency"]))
    files = [out / f for f in info["files"]]
    last = max(pq.read_table(f, columns=["ds"])["ds"].to_pandas().max() for f in files)
    cutoff = last - (horizon - 1) * step  # readings from here on are held out
    kept = out / "ingest"
    kept.mkdir(exist_ok=True)
    first = pq.read_table(files[0], columns=["unique_id"])["unique_id"].to_pandas()
    ids = sorted(first.astype(str).unique())[:sample]
    held, history = [], []
    for f in files:
        table = pads.dataset(f).to_table()
        stamps = pd.DatetimeIndex(table["ds"].to_pandas())
        before = stamps < cutoff
        pq.write_table(table.filter(before), kept / f.name)
        frame = table.to_pandas()
        frame["unique_id"] = frame["unique_id"].astype(str)
        mine = frame["unique_id"].isin(ids).to_numpy()
        held.append(frame[mine & ~before])
        history.append(frame[mine & before])
    actuals, past = out / "actuals.parquet", out / "history_sample.parquet"
    pd.concat(held).drop_duplicates(["unique_id", "ds"], keep="last").to_parquet(actuals)
    pd.concat(history).drop_duplicates(["unique_id", "ds"], keep="last").to_parquet(past)
    return [str(kept / f.name) for f in files], actuals, past, season


def accuracy(ws: Path, actuals: Path, past: Path, season: int, frequency: str) -> dict[str, Any]:
    """MASE of the published forecasts on the held-out readings, beside seasonal naive's.

    Both on the same sample and the same scale: the mean absolute seasonal difference of each
    series' history (at the first season). Seasonal naive repeats the last season observed;
    a series without a full last season (a gap) is left out of both.
    """
    import numpy as np
    import pandas as pd

    from steadycast.storage import releases

    truth = pd.read_parquet(actuals)
    history = pd.read_parquet(past)
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(frequency))
    release = releases.current(ws / "releases", "fleet")
    if release is None:
        return {}
    published = releases.read_forecasts(release, sorted(truth["unique_id"].unique()))
    published["unique_id"] = published["unique_id"].astype(str)
    published["ds"] = pd.to_datetime(published["ds"], utc=True)
    truth["ds"] = pd.to_datetime(truth["ds"], utc=True)
    history["ds"] = pd.to_datetime(history["ds"], utc=True)
    lagged = history.assign(ds=history["ds"] + season * step)
    pairs = history.merge(lagged, on=["unique_id", "ds"], suffixes=("", "_lag"))
    scale = (pairs["y"] - pairs["y_lag"]).abs().groupby(pairs["unique_id"]).mean()
    last = history.groupby("unique_id")["ds"].transform("max")
    recent = history[history["ds"] > last - season * step]
    # Seasonal naive: the reading one season (a whole number of them) before each target.
    target = truth[["unique_id", "ds"]].merge(
        history.groupby("unique_id")["ds"].max().rename("last").reset_index(), on="unique_id"
    )
    back = np.ceil((target["ds"] - target["last"]) / (season * step)).astype(int)
    target["source"] = target["ds"] - back * season * step
    naive = target.merge(
        recent.rename(columns={"ds": "source", "y": "naive"}), on=["unique_id", "source"]
    )
    scored = truth.merge(published[["unique_id", "ds", "yhat"]], on=["unique_id", "ds"]).merge(
        naive[["unique_id", "ds", "naive"]], on=["unique_id", "ds"]
    )
    per = (
        scored.assign(
            model=(scored["y"] - scored["yhat"]).abs(), naive=(scored["y"] - scored["naive"]).abs()
        )
        .groupby("unique_id")[["model", "naive"]]
        .mean()
    )
    per = per.div(scale.reindex(per.index), axis=0).replace([np.inf, -np.inf], np.nan).dropna()
    return {
        "scored_series": len(per),
        "mase": float(per["model"].mean()),
        "mase_naive": float(per["naive"].mean()),
        "relative": float(per["model"].mean() / per["naive"].mean()),
        "beats_naive_share": float((per["model"] < per["naive"]).mean()),
        "median_mase": float(per["model"].median()),
        "median_mase_naive": float(per["naive"].median()),
    }


def _table(intro: list[str], columns: list[str], body: list[str]) -> list[str]:
    """A results table under its introduction, every column right-aligned."""
    header = "| " + " | ".join(columns) + " |"
    return ["", *intro, "", header, "| " + " | ".join("---:" for _ in columns) + " |", *body]


PROGRESS = re.compile(r"forecast: (\d+)/(\d+) partitions .*elapsed ([0-9.]+) s")


def partition_rates(stderr: str) -> dict[str, float] | None:
    """Partitions a minute in the first and the last tenth of the forecast stage, from the
    run's progress lines: a run that slows as it goes shows it here."""
    points = [
        (int(m[1]), int(m[2]), float(m[3]))
        for m in (PROGRESS.search(line) for line in stderr.splitlines())
        if m
    ]
    if len(points) < 3:
        return None
    total = points[-1][1]
    first = [p for p in points if p[0] <= total / 10]
    last = [p for p in points if p[0] >= total * 9 / 10]
    # Progress lines come every few seconds: a short stage may have one line in a tenth.
    first = first if len(first) > 1 else points[:2]
    last = last if len(last) > 1 else points[-2:]

    def per_minute(a: tuple[int, int, float], b: tuple[int, int, float]) -> float:
        return 60.0 * (b[0] - a[0]) / max(b[2] - a[2], 1e-9)

    return {
        "first_tenth": per_minute(points[0], first[-1]),
        "last_tenth": per_minute(last[0], points[-1]),
        "overall": per_minute(points[0], points[-1]),
    }


def end_to_end(
    out: Path,
    info: dict[str, Any],
    partition_size: int,
    workers: int,
    score_sample: int,
    pool: list[str],
) -> dict[str, Any]:
    ws = WORK / f"ws_{out.name}"
    shutil.rmtree(ws, ignore_errors=True)
    _checked(measure([*STEADYCAST, "init", str(ws)]), "init")
    pipeline = (out / "pipeline.toml").read_text()
    pipeline += (
        f'\n[models]\ntier = "fast"\nfast_candidates = {json.dumps(pool)}\n'
        f"\n[forecast]\npartition_size = {partition_size}\nworkers = {workers}\n"
    )
    (ws / "pipelines" / "fleet.toml").write_text(pipeline)
    files, actuals, past, season = hold_out(out, info, score_sample)
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
    summary["forecast_rate"] = partition_rates(run.stderr)
    summary["checks"] = check_scores(ws, out)
    summary["accuracy"] = accuracy(ws, actuals, past, season, info["frequency"])
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
    files = [str(out / "ingest" / Path(f).name) for f in info["files"]]  # held-out tail cut
    freq = {"1h": "h", "30min": "30min", "1D": "D"}[info["frequency"]]
    found: dict[str, Any] = {}
    if not sample:
        return found
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
    if args.pool != list(FAST_POOL):
        command += f" --fast-candidates {','.join(args.pool)}"
    lines = [
        f"## Scale: {args.frequency} fleets, {args.days} days of history, fast tier, end to end",
        "",
        f"{today()} on {machine()}. Reproduce: `{command}` (part of `make bench`).",
        "",
        "Each fleet is made by `steadycast synth` (daily and weekly cycles, holidays, household",
        "heterogeneity, planted faults), then `steadycast ingest` (all files) and `steadycast run`",
        f"(tier `fast`: {', '.join(args.pool)}; partitions of {args.partition_size} series,",
        f"{args.workers or 'one per core'} workers: snapshot, data-quality checks, backtest of",
        f"{BACKTEST_WINDOWS} windows, selection (a combination of each series' best three where its backtest",
        "wins), forecast, gate, publish), each in its own process. The fleet's last horizon is",
        "held out (never ingested) and scored. Peak memory: the most the command held at once",
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
    scored = [r for r in rows if r.get("accuracy")]
    if scored:
        lines += _table(
            [
                "Accuracy of the published forecasts on the held-out horizon (a sample of series;",
                "MASE scaled by each series' in-sample seasonal naive error at the first season;",
                "planted faults in the held-out readings are scored as they are):",
            ],
            [
                "series",
                "scored",
                "MASE, published",
                "MASE, seasonal naive",
                "ratio",
                "published better on",
                "median MASE, published / seasonal naive",
            ],
            [
                f"| {r['series']:,} | {a['scored_series']:,} | {a['mase']:.3f} "
                f"| {a['mase_naive']:.3f} | {a['relative']:.3f} | {a['beats_naive_share']:.0%} "
                f"| {a['median_mase']:.3f} / {a['median_mase_naive']:.3f} |"
                for r in scored
                for a in [r["accuracy"]]
            ],
        )
    lines += ["", "Where the time goes (seconds, per stage of the run):", ""]
    names = list(rows[0]["stages"])
    lines.append("| series | ingest | " + " | ".join(names) + " |")
    lines.append("| ---: | ---: | " + " | ".join("---:" for _ in names) + " |")
    for r in rows:
        cells = " | ".join(f"{r['stages'].get(n, {}).get('wall_s', 0):.1f}" for n in names)
        lines.append(f"| {r['series']:,} | {r['ingest_wall_s']:.1f} | {cells} |")
    rates = [r for r in rows if r.get("forecast_rate")]
    if rates:
        lines += _table(
            ["The forecast stage's pace (partitions a minute, from the run's progress lines):"],
            ["series", "first tenth", "last tenth", "whole stage"],
            [
                f"| {r['series']:,} | {f['first_tenth']:.1f} | {f['last_tenth']:.1f} "
                f"| {f['overall']:.1f} |"
                for r in rates
                for f in [r["forecast_rate"]]
            ],
        )
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
        "statsforecast runs SeasonalNaive and Theta (`cross_validation` with the same 3 windows,",
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
    parser.add_argument("--score-sample", type=int, default=20000, help="series scored")
    parser.add_argument("--name", default="scale")
    parser.add_argument("--keep", action="store_true", help="keep the generated fleets")
    parser.add_argument(
        "--fast-candidates", default=",".join(FAST_POOL), help="the fast pool to run"
    )
    args = parser.parse_args()
    args.pool = args.fast_candidates.split(",")
    rows = []
    for n in [int(s) for s in args.series.split(",")]:
        started = time.perf_counter()
        out, info, synth_s = fleet(n, args.days, args.frequency)
        row = end_to_end(out, info, args.partition_size, args.workers, args.score_sample, args.pool)
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
