"""The demo: the whole job on a bundled real sample, so a new user sees it work in one command."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console

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
    batch = ingest_file(ws, cfg, sample_path())
    summary: dict[str, Any] = {
        "workspace": str(ws.root),
        "pipeline": DEMO_PIPELINE,
        "ingest": batch.contract(),
    }
    if json_out:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return summary
    console.rule("[bold]steadycast demo")
    console.print(f"Workspace: {ws.root}")
    console.print(f"Pipeline:  {DEMO_PIPELINE} (pipelines/{DEMO_PIPELINE}.toml)")
    console.print(f"Sample:    SGSC smart meters, {sample_path().name}")
    console.print(
        f"Ingest:    batch {batch.batch_id} {batch.status}: read {batch.rows_read:,} rows, "
        f"stored {batch.rows_stored:,}, quarantined {batch.rows_quarantined:,} "
        f"in {batch.wall_s:.2f} s"
    )
    for reason, count in batch.quarantine_reasons.items():
        console.print(f"           quarantined {count:,} x {reason}")
    console.print(f"Try:       steadycast quarantine {DEMO_PIPELINE} -w {ws.root}")
    return summary
