"""The demo: the whole job on a bundled real sample, so a new user sees it work in one command."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from steadycast import releases
from steadycast.run import run_pipeline
from steadycast.stages.ingest import ingest_file
from steadycast.workspace import Workspace

DEMO_PIPELINE = "meters"

DEMO_CONFIG = """\
# Half-hourly household electricity use from the SGSC smart-meter trial (see the sample's
# SOURCE.md in the steadycast package), forecast one day ahead.
[source]
id_column = "customer_id"
time_column = "reading_datetime"
value_column = "general_supply_kwh"
timezone = "Australia/Sydney"
time_format = ""

[series]
frequency = "30min"
horizon = 48
season_lengths = [48, 336]
min_value = 0
max_value = 100

[models]
# A quick set for the demo; the default set adds AutoETS and MSTL (slower, see docs).
candidates = ["SeasonalNaive", "AutoTheta", "LightGBM"]
levels = [80, 95]

[backtest]
windows = 2
"""


def sample_path() -> Path:
    """The bundled real sample (shipped inside the package, not read from anywhere else)."""
    return Path(str(resources.files("steadycast") / "data" / "sgsc_sample.csv.gz"))


def run_demo(directory: Path, console: Console, json_out: bool = False) -> dict[str, Any]:
    ws = Workspace.init(directory)
    pipeline_file = ws.pipelines_dir / f"{DEMO_PIPELINE}.toml"
    if not pipeline_file.exists():
        pipeline_file.write_text(DEMO_CONFIG, encoding="utf-8")
    cfg = ws.pipeline(DEMO_PIPELINE)
    if not json_out:
        console.rule("[bold]steadycast demo")
        console.print(f"Workspace: {ws.root}")
        console.print(f"Pipeline:  {DEMO_PIPELINE} (pipelines/{DEMO_PIPELINE}.toml)")
        console.print("Sample:    SGSC smart meters, 49 households, 4 weeks of half-hourly kWh")
    batch = ingest_file(ws, cfg, sample_path())
    if not json_out:
        console.print(
            f"Ingest:    batch {batch.batch_id} {batch.status}: read {batch.rows_read:,} rows, "
            f"stored {batch.rows_stored:,}, quarantined {batch.rows_quarantined:,} "
            f"in {batch.wall_s:.2f} s"
        )
        console.print("Run:       backtesting and forecasting every meter (about a minute) ...")
    result = run_pipeline(ws, DEMO_PIPELINE)
    summary: dict[str, Any] = {
        "workspace": str(ws.root),
        "pipeline": DEMO_PIPELINE,
        "ingest": batch.contract(),
        "run": result.as_dict(),
    }
    if json_out:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return summary
    console.print(
        f"           run {result.run_id}: {result.status}"
        + (f", release {result.release_id}" if result.release_id else "")
        + (f" ({result.error})" if result.error else "")
    )
    release = releases.current(ws.releases_dir, DEMO_PIPELINE) if result.release_id else None
    if release is not None:
        frame = releases.read_forecasts(release)
        mix = frame.drop_duplicates("unique_id")["model"].value_counts()
        table = Table(title="Model chosen per meter (by backtest)", box=None)
        table.add_column("model")
        table.add_column("meters", justify="right")
        for model, count in mix.items():
            table.add_row(str(model), str(count))
        console.print(table)
        console.print(
            f"Forecast:  {len(frame):,} rows ({frame['unique_id'].nunique()} meters x "
            f"{cfg.series.horizon} half hours) with 80% and 95% intervals; "
            f"{result.fallback_series} meters on a fallback"
        )
    console.print("Try:")
    console.print(f"  steadycast forecast {DEMO_PIPELINE} -w {ws.root} | head")
    console.print(f"  steadycast releases {DEMO_PIPELINE} -w {ws.root}")
    console.print(f"  steadycast quarantine {DEMO_PIPELINE} -w {ws.root}")
    console.print(f"  steadycast models -w {ws.root}")
    return summary
