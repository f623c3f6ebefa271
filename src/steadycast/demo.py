"""The demo: the whole job on a bundled real sample, so a new user sees it work in one command."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from steadycast.ingestion.batch import BatchResult, ingest_file
from steadycast.ops import advice
from steadycast.ops.incidents import Incident, list_incidents
from steadycast.pipeline.run import RunResult, run_pipeline
from steadycast.report import write_report
from steadycast.storage import releases
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


def _split_sample(inbox: Path) -> tuple[Path, Path]:
    """Two deliveries from the sample: three weeks, then a fourth in which a third of the
    meters stop reporting (a planted fault the checks must catch)."""
    inbox.mkdir(parents=True, exist_ok=True)
    first, second = inbox / "weeks-1-3.csv.gz", inbox / "week-4-faulty.csv.gz"
    if first.exists() and second.exists():
        return first, second
    frame = pd.read_csv(sample_path(), dtype={"customer_id": str})
    cut = "2013-05-27 00:00:00"
    early, late = frame[frame["reading_datetime"] < cut], frame[frame["reading_datetime"] >= cut]
    meters = sorted(late["customer_id"].unique())
    silent = set(meters[::3])
    late = late[~late["customer_id"].isin(silent)]
    early.to_csv(first, index=False, compression="gzip")
    late.to_csv(second, index=False, compression="gzip")
    return first, second


def run_demo(directory: Path, console: Console, json_out: bool = False) -> dict[str, Any]:
    """Ingest, run and publish; then a faulty delivery that the gate holds, with its incident."""
    ws = Workspace.init(directory)
    pipeline_file = ws.pipelines_dir / f"{DEMO_PIPELINE}.toml"
    if not pipeline_file.exists():
        pipeline_file.write_text(DEMO_CONFIG, encoding="utf-8")
    cfg = ws.pipeline(DEMO_PIPELINE)
    say = (lambda *a, **k: None) if json_out else console.print
    if not json_out:
        console.rule("[bold]steadycast demo")
    say(f"Workspace: {ws.root}")
    say(f"Pipeline:  {DEMO_PIPELINE} (pipelines/{DEMO_PIPELINE}.toml)")
    say("Sample:    SGSC smart meters, 49 households, 4 weeks of half-hourly kWh")
    first, second = _split_sample(ws.root / "inbox")

    say("\n[bold]1. A clean delivery[/bold] (weeks 1-3)")
    batch1 = ingest_file(ws, cfg, first)
    _say_batch(say, batch1)
    say("   Run: checking, backtesting and forecasting every meter (about a minute) ...")
    run1 = run_pipeline(ws, DEMO_PIPELINE)
    _say_run(say, run1)
    if run1.status == "published" and not json_out:
        _model_mix(console, ws, cfg.series.horizon, run1.fallback_series)

    say("\n[bold]2. A faulty delivery[/bold] (week 4, a third of the meters stopped reporting)")
    batch2 = ingest_file(ws, cfg, second)
    _say_batch(say, batch2)
    run2 = run_pipeline(ws, DEMO_PIPELINE)
    _say_run(say, run2)
    open_incidents = [
        i for i in list_incidents(ws.control_path, pipeline=DEMO_PIPELINE) if i.state == "open"
    ]
    held = [i for i in open_incidents if i.kind == "held"]
    say(
        f"   Incidents: {len(held)} holding the run, {len(open_incidents) - len(held)} about "
        "single meters (listed at the end, each with what clears it)."
    )
    current = releases.current_id(ws.releases_dir, DEMO_PIPELINE)
    say(f"   Still serving release {current} (the last good one).")

    report = ws.root / f"report-{run2.run_id}.html"
    write_report(ws, run2.run_id, report)
    say(f"\nReport:    {report}")
    _say_next_steps(say, ws.root, run2)
    _say_incidents(say, ws.root, run2, open_incidents)
    summary: dict[str, Any] = {
        "workspace": str(ws.root),
        "pipeline": DEMO_PIPELINE,
        "ingest": [batch1.contract(), batch2.contract()],
        "runs": [run1.as_dict(), run2.as_dict()],
        "current_release": current,
        "open_incidents": [i.as_dict() for i in open_incidents],
        "report": str(report),
    }
    if json_out:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _say_next_steps(say: Callable[..., None], root: Path, run: RunResult) -> None:
    """The levers and the commands to look around, each one working when pasted."""
    if shutil.which("steadycast") is None:
        bin_dir = Path(sys.executable).parent
        activate = shlex.quote(str(bin_dir / "activate"))
        say(
            f"(The commands below are in {bin_dir}: run `source {activate}` first.)",
            markup=False,
        )
    if run.status == "held":
        say("Levers (one command each):")
        say("  publish the held run anyway (the vanished meters were decommissioned):")
        say(
            f"    {advice.approve(root, run.run_id, 'meters were decommissioned')}",
            markup=False,
        )
        say("  then, to go back to the release before it:")
        say(f"    {advice.rollback(root, DEMO_PIPELINE, 'undo the approval')}", markup=False)
    say("Look around:")
    for command in (
        advice.command(root, "status", DEMO_PIPELINE),
        advice.command(root, "incidents", "--state", "open"),
        advice.command(root, "forecast", DEMO_PIPELINE) + " | head",
        advice.command(root, "runs", DEMO_PIPELINE),
        advice.command(root, "hogs", "--since", "1d"),
        advice.command(root, "serve") + "   # then open http://127.0.0.1:8000/",
    ):
        say(f"  {command}", markup=False)


def _say_incidents(
    say: Callable[..., None], root: Path, run: RunResult, open_incidents: list[Incident]
) -> None:
    """One incident per cause, and the lever that clears each."""
    if not open_incidents:
        return
    say("Open incidents, one per cause, and what clears each:")
    by_check: dict[str, list[Incident]] = {}
    for incident in open_incidents:
        if incident.kind == "held":
            say(f"  {incident.id} ({incident.severity}) {incident.title}", markup=False)
            say(f"     cleared by approving run {run.run_id} (the lever above), or by the")
            say("     next run that publishes")
        else:
            by_check.setdefault(incident.title.split(" failed", 1)[0], []).append(incident)
    for check, found in sorted(by_check.items()):
        ids = ", ".join(str(i.id) for i in found[:6]) + (", ..." if len(found) > 6 else "")
        say(
            f"  {check}: {len(found)} meter(s) (incidents {ids}); each clears itself once its "
            "meter reports normally again, or by hand:",
            markup=False,
        )
        note = f"{check} checked on site"
        say(
            f"     {advice.command(root, 'resolve', str(found[0].id), '--note', note)}",
            markup=False,
        )


def _say_batch(say: Callable[..., None], batch: BatchResult) -> None:
    say(
        f"   Ingest: batch {batch.batch_id} {batch.status}: read {batch.rows_read:,} rows, "
        f"stored {batch.rows_stored:,}, quarantined {batch.rows_quarantined:,} in {batch.wall_s:.2f} s"
    )


def _say_run(say: Callable[..., None], run: RunResult) -> None:
    colour = {"published": "green", "held": "yellow"}.get(run.status, "red")
    say(
        f"   Run {run.run_id}: [{colour}]{run.status}[/{colour}]"
        + (f", release {run.release_id}" if run.release_id else "")
    )
    for g in run.gate:
        if not g["passed"]:
            say(f"   gate {g['check']}: {g['detail']}", markup=False)
    if run.status == "failed" and run.error:
        say(f"   error: {run.error}", markup=False)


def _model_mix(console: Console, ws: Workspace, horizon: int, fallbacks: int) -> None:
    release = releases.current(ws.releases_dir, DEMO_PIPELINE)
    if release is None:
        return
    frame = releases.read_forecasts(release)
    mix = frame.drop_duplicates("unique_id")["model"].value_counts()
    table = Table(title="   Model chosen per meter (by backtest)", box=None)
    table.add_column("model")
    table.add_column("meters", justify="right")
    for model, count in mix.items():
        table.add_row(str(model), str(count))
    console.print(table)
    console.print(
        f"   Forecast: {len(frame):,} rows ({frame['unique_id'].nunique()} meters x {horizon} half "
        f"hours) with 80% and 95% intervals; {fallbacks} meters on a fallback"
    )
