"""A fleet generator: realistic meter-like series with planted faults and their ground truth.

``generate_fleet`` writes partitioned Parquet files (``unique_id, ds, y``), a pipeline ready to
ingest them and ``ground_truth.parquet`` (one row per planted fault), so tests and benchmarks
can measure ingest and the data-quality checks on fleets of any size; ``score_checks`` turns
check findings into precision and recall per fault kind. See ``docs/synth.md``.

    synth/
      timeline.py  the shared clock: local days, holidays, temperature, DST changes
      load.py      the household load model (clean readings, a chunk at a time)
      faults.py    FaultRates and planting faults into a chunk, with their ground truth
      fleet.py     generate_fleet: chunks -> Parquet files, pipeline.toml, ground truth
      score.py     score_checks: precision and recall of checks against the ground truth
"""

from steadycast.synth.faults import DELIVERY_FAULTS, FAULTS, VALUE_FAULTS, FaultRates
from steadycast.synth.fleet import FleetSummary, generate_fleet, pipeline_toml
from steadycast.synth.score import DEFAULT_MAPPING, score_checks

__all__ = [
    "DEFAULT_MAPPING",
    "DELIVERY_FAULTS",
    "FAULTS",
    "VALUE_FAULTS",
    "FaultRates",
    "FleetSummary",
    "generate_fleet",
    "pipeline_toml",
    "score_checks",
]
