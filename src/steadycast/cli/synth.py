"""``steadycast synth``: a realistic synthetic fleet with planted faults, for trials and
benchmarks."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from steadycast.cli._app import JsonOpt, emit_json, out, progress

if TYPE_CHECKING:
    from steadycast.synth import FaultRates

TimezoneOpt = Annotated[str, typer.Option("--timezone", help="Zone of the local timestamps.")]
NoFaultsOpt = Annotated[bool, typer.Option("--no-faults", help="Clean data, nothing planted.")]
RecentDaysOpt = Annotated[
    float | None, typer.Option("--recent-days", help="Plant faults in the last N days.")
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace a fleet already there.")]


def synth(
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory for the fleet.")],
    series: Annotated[int, typer.Option("--series", help="Number of series.")] = 1000,
    days: Annotated[int, typer.Option("--days", help="Days of history.")] = 28,
    frequency: Annotated[str, typer.Option("--frequency", help="30min, 1h or 1D.")] = "1h",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    start: Annotated[str, typer.Option("--start", help="First day, YYYY-MM-DD.")] = "2024-01-01",
    timezone: TimezoneOpt = "UTC",
    rows_per_file: Annotated[int, typer.Option("--rows-per-file")] = 5_000_000,
    no_faults: NoFaultsOpt = False,
    stuck_rate: Annotated[float | None, typer.Option("--stuck-rate")] = None,
    zeros_rate: Annotated[float | None, typer.Option("--zeros-rate")] = None,
    spike_rate: Annotated[float | None, typer.Option("--spike-rate")] = None,
    gap_rate: Annotated[float | None, typer.Option("--gap-rate")] = None,
    level_shift_rate: Annotated[float | None, typer.Option("--level-shift-rate")] = None,
    dst_rate: Annotated[float | None, typer.Option("--dst-rate")] = None,
    late_rate: Annotated[float | None, typer.Option("--late-rate")] = None,
    duplicate_rate: Annotated[float | None, typer.Option("--duplicate-rate")] = None,
    recent_days: RecentDaysOpt = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Generate a realistic synthetic fleet (Parquet), its pipeline and the ground truth of its faults."""
    from steadycast.synth import generate_fleet

    rates = _fault_rates(
        no_faults,
        stuck=stuck_rate,
        zeros=zeros_rate,
        spike=spike_rate,
        gap=gap_rate,
        level_shift=level_shift_rate,
        dst=dst_rate,
        late=late_rate,
        duplicate=duplicate_rate,
        recent_days=recent_days,
    )
    with progress(enabled=not json_out) as update:
        summary = generate_fleet(
            output,
            series=series,
            days=days,
            frequency=frequency,
            seed=seed,
            faults=rates,
            start=start,
            timezone=timezone,
            rows_per_file=rows_per_file,
            overwrite=overwrite,
            progress=(lambda done, total: update("synth", done, total)) if update else None,
        )
    if json_out:
        emit_json(summary.as_dict())
        return
    _print_fleet(summary.as_dict(), series, output)


def _fault_rates(no_faults: bool, **given: float | None) -> FaultRates:
    """The default rates (or none with ``--no-faults``), each one given on the line replacing
    its default."""
    import dataclasses

    from steadycast.synth import FaultRates

    rates = FaultRates.none() if no_faults else FaultRates()
    return dataclasses.replace(rates, **{k: v for k, v in given.items() if v is not None})


def _print_fleet(doc: dict[str, Any], series: int, output: Path) -> None:
    out.print(f"wrote {doc.get('rows', 0):,} rows of {series:,} series to {output}", markup=False)
    out.print(f"  pipeline:     {output / 'pipeline.toml'}", markup=False)
    out.print(f"  ground truth: {output / 'ground_truth.parquet'}", markup=False)
    # The directory quoted, the file pattern not: the shell expands it.
    files = f"{shlex.quote(str(output / 'data'))}/*.parquet"
    out.print(
        f"  ingest with:  steadycast ingest NAME {files} (after copying pipeline.toml)",
        markup=False,
    )
