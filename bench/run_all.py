"""Run every benchmark and assemble bench/RESULTS.md from their sections.

    python bench/run_all.py [--only ingest,accuracy] [--quick]

Each benchmark writes bench/results/NAME.md; a benchmark that is not run keeps its last section,
which carries its own date, so RESULTS.md never mixes figures without saying when each was taken.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH, RESULTS, machine, today

# name -> (script, arguments for the full run, arguments for --quick)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "ingest": ("ingest.py", ["--repeats", "3"], ["--rows", "2000000", "--repeats", "1"]),
    "forecast": ("forecast.py", [], ["--series", "40", "--partition", "20"]),
    "fast_tier": ("fast_tier.py", ["--series", "100000"], ["--series", "2000"]),
    "regime": ("regime.py", [], []),
    "backtest_alignment": ("backtest_alignment.py", [], ["--meters", "20"]),
    "scale": ("scale.py", [], ["--series", "500,5000", "--name", "scale"]),
    "scale_1d": (
        "scale.py",
        ["--series", "1000,10000", "--days", "730", "--frequency", "1D", "--name", "scale_1d"],
        ["--series", "1000", "--days", "730", "--frequency", "1D", "--name", "scale_1d"],
    ),
    "scale_1m": (
        "scale.py",
        ["--series", "1000000", "--days", "730", "--frequency", "1D", "--name", "scale_1m"],
        ["--series", "20000", "--days", "730", "--frequency", "1D", "--name", "scale_1m"],
    ),
    "spark": ("spark.py", [], ["--series", "2000"]),
    "serve": ("serve.py", [], ["--seconds", "5"]),
    "sinks": ("sinks.py", [], ["--rows", "200000", "--repeats", "1"]),
    "accuracy": (
        "accuracy.py",
        ["--out", str(RESULTS / "accuracy.md")],
        ["--quick", "--out", str(RESULTS / "accuracy.md")],
    ),
    "accuracy_temperatures": (
        "accuracy.py",
        [
            *("--datasets", "gefcom", "--temperatures", "--gefcom-weeks", "156", "--workers", "1"),
            *("--out", str(RESULTS / "accuracy_temperatures.md")),
        ],
        [
            *("--datasets", "gefcom", "--temperatures", "--quick"),
            *("--out", str(RESULTS / "accuracy_temperatures.md")),
        ],
    ),
    "accuracy_hourly": (
        "accuracy.py",
        ["--datasets", "hourly", "--workers", "1", "--out", str(RESULTS / "accuracy_hourly.md")],
        ["--datasets", "hourly", "--quick", "--out", str(RESULTS / "accuracy_hourly.md")],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    chosen = [n for n in BENCHMARKS if not args.only or n in args.only.split(",")]
    failed = []
    for name in chosen:
        script, full, quick = BENCHMARKS[name]
        if not (BENCH / script).exists():
            print(f"skip {name}: {script} not present")
            continue
        print(f"== {name}", flush=True)
        done = subprocess.run(
            [sys.executable, str(BENCH / script), *(quick if args.quick else full)]
        )
        if done.returncode != 0:
            failed.append(name)
    sections = [p.read_text() for p in sorted(RESULTS.glob("*.md"))]
    header = (
        "# Benchmark results\n\n"
        f"Assembled {today()} on {machine()}.\n"
        "Every section says when it was measured and the command that reproduces it; run them all "
        "with `make bench`. Figures are medians on a shared 2-core machine: compare the ratios "
        "(each measured against its peer in the same run), not the seconds across sections.\n\n"
    )
    (BENCH / "RESULTS.md").write_text(header + "\n".join(sections), encoding="utf-8")
    print(f"wrote {BENCH / 'RESULTS.md'}")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
