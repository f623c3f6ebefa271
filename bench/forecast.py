"""Forecast benchmark: steadycast's backtest + forecast against statsforecast called directly.

Same models, same data, same machine, in the same run, each side in its own child process:

- statsforecast: ``StatsForecast(models, n_jobs=2).cross_validation(...)`` then ``.forecast(...)``;
- steadycast: ``forecast_one_partition`` over partitions of series with the isolated worker pool
  (2 workers): profile, route, backtest, select, forecast, validate, fallback.

Also runs steadycast at two fleet sizes to show that peak memory is one partition's worth, not
the fleet's.

    python bench/forecast.py [--series 400] [--days 28]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WORK, machine, measure, today, write_section

MODELS = ["SeasonalNaive", "AutoETS", "AutoTheta"]
HORIZON = 24
WINDOWS = 2
SEASON = 24

GENERATE = """
import numpy as np, pandas as pd, sys
series, days, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(42)
ds = pd.date_range("2024-01-01", periods=24 * days, freq="h")
hour = ds.hour.to_numpy(); dow = ds.dayofweek.to_numpy()
frames = []
for i in range(series):
    level = rng.uniform(0.3, 3.0)
    daily = 1 + 0.6 * np.sin(2 * np.pi * (hour - rng.integers(0, 24)) / 24)
    weekly = 1 + 0.15 * (dow >= 5)
    y = np.maximum(0, level * daily * weekly + rng.normal(0, 0.1 * level, len(ds)))
    frames.append(pd.DataFrame({"unique_id": f"s{i:06d}", "ds": ds, "y": y}))
pd.concat(frames, ignore_index=True).to_parquet(out)
"""

STATSFORECAST = """
import json, resource, sys, time
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import AutoETS, AutoTheta, SeasonalNaive
df = pd.read_parquet(sys.argv[1])
h, windows, season = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t = time.perf_counter()
sf = StatsForecast(models=[SeasonalNaive(season), AutoETS(season_length=season), AutoTheta(season_length=season)], freq="h", n_jobs=2)
cv = sf.cross_validation(df=df, h=h, n_windows=windows, step_size=h, level=[80, 95])
fc = sf.forecast(df=df, h=h, level=[80, 95])
wall = time.perf_counter() - t
print(json.dumps({"wall_s": wall, "rows": len(fc)}))
"""

STEADYCAST = """
import json, resource, sys, time
import pandas as pd
from steadycast.config import parse_pipeline
from steadycast.models.isolation import IsolatedRunner
from steadycast.pipeline.run import forecast_one_partition
df = pd.read_parquet(sys.argv[1])
h, windows, season, partition = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
models = sys.argv[6].split(",")
cfg = parse_pipeline({
    "source": {}, "series": {"frequency": "1h", "horizon": h, "season_lengths": [season]},
    "models": {"candidates": models, "levels": [80, 95]},
    "backtest": {"windows": windows, "ensemble_top_k": 0},
    "forecast": {"workers": 2, "partition_size": partition},
}, "bench", "bench")
ids = sorted(df["unique_id"].unique())
t = time.perf_counter()
rows = 0
with IsolatedRunner(workers=2, timeout_s=3600, memory_mb=8192) as runner:
    runner.wait_ready()
    t = time.perf_counter()
    for start in range(0, len(ids), partition):
        part = df[df["unique_id"].isin(ids[start:start + partition])]
        result, _ = forecast_one_partition(part, cfg, runner, None)
        rows += len(result.forecasts)
    wall = time.perf_counter() - t
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
own = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": wall, "rows": rows, "peak_worker_mb": kids.ru_maxrss / 1024,
                  "peak_driver_mb": own.ru_maxrss / 1024}))
"""


def child(script: str, *args: str) -> dict[str, float]:
    done = measure([sys.executable, "-c", script, *args])
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["cpu_s"] = done.cpu_s
    result["process_peak_mb"] = done.peak_rss_mb
    return result


def data(series: int, days: int) -> Path:
    path = WORK / f"fleet_{series}x{days}d.parquet"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        child_done = measure([sys.executable, "-c", GENERATE, str(series), str(days), str(path)])
        if child_done.returncode != 0:
            raise SystemExit(child_done.stderr)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=400)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--partition", type=int, default=100)
    args = parser.parse_args()
    path = data(args.series, args.days)
    common = [str(HORIZON), str(WINDOWS), str(SEASON)]
    sf = child(STATSFORECAST, str(path), *common)
    ours = child(STEADYCAST, str(path), *common, str(args.partition), ",".join(MODELS))
    small = data(args.series // 4, args.days)
    ours_small = child(STEADYCAST, str(small), *common, str(args.partition), ",".join(MODELS))
    ratio = ours["wall_s"] / sf["wall_s"]
    figures = {
        "statsforecast": sf,
        "steadycast": ours,
        "steadycast_quarter_fleet": ours_small,
        "ratio": ratio,
    }
    print(json.dumps(figures, indent=2))
    n = args.series
    write_section(
        "forecast",
        f"""## Forecast: steadycast against statsforecast directly

{today()} on {machine()}. Reproduce: `python bench/forecast.py --series {n} --days {args.days}`
(part of `make bench`).

{n} synthetic hourly meter-like series ({args.days} days, daily and weekly cycles, noise), models
{", ".join(MODELS)} (season {SEASON}), horizon {HORIZON}, {WINDOWS} backtest windows, intervals 80 and
95. statsforecast: `cross_validation` + `forecast` with `n_jobs=2`. steadycast: profile, route,
backtest, select, forecast with validation and fallback, model code in 2 isolated worker
processes, partitions of {args.partition} series (ensembles off, so both sides fit the same models).
Wall time excludes process and worker start-up on both sides.

| | wall | CPU (incl. workers) | peak memory |
| --- | ---: | ---: | ---: |
| statsforecast direct | {sf["wall_s"]:.1f} s | {sf["cpu_s"]:.1f} s | {sf["process_peak_mb"]:.0f} MB (driver) |
| steadycast | {ours["wall_s"]:.1f} s | {ours["cpu_s"]:.1f} s | driver {ours["peak_driver_mb"]:.0f} MB, largest worker {ours["peak_worker_mb"]:.0f} MB |
| **ratio** (target at most 1.15x) | **{ratio:.2f}x** | | |

Memory against fleet size (same partition size): {n // 4} series: driver
{ours_small["peak_driver_mb"]:.0f} MB, worker {ours_small["peak_worker_mb"]:.0f} MB; {n} series: driver
{ours["peak_driver_mb"]:.0f} MB, worker {ours["peak_worker_mb"]:.0f} MB.
""",
    )


if __name__ == "__main__":
    main()
