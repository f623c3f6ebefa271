"""The local engine: partitions one after another in this process, model code in one pool of
warm, isolated worker processes (``IsolatedRunner``) shared by every partition.

Partitions stream: one partition's history is in memory at a time, so memory is bounded by the
partition size, whatever the size of the fleet. Parallelism comes from the worker pool
(``forecast.workers``, one per core by default), which every model call of a partition spreads
over.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from steadycast.engines.base import HISTORY_COLUMNS, EngineRun, Job, Progress, TaskReport
from steadycast.models.isolation import IsolatedRunner


def read_partition(directory: Path) -> pd.DataFrame:
    """The snapshot rows of one partition (every Parquet file of its directory)."""
    files = sorted(directory.glob("*.parquet"))
    tables = [pq.read_table(f, columns=HISTORY_COLUMNS) for f in files]
    return pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame(columns=HISTORY_COLUMNS)


class LocalEngine:
    """Runs every partition here; the default."""

    name = "local"

    def run(self, job: Job, progress: Progress | None = None) -> EngineRun:
        reports: list[TaskReport] = []
        if not job.parts:
            return EngineRun(reports)
        limits = job.limits
        with IsolatedRunner(
            workers=limits.workers, timeout_s=limits.timeout_s, memory_mb=limits.memory_mb
        ) as runner:
            for done, part in enumerate(job.parts):
                report = job.task.committed(part)
                if report is None:
                    history = read_partition(job.snapshot / part)
                    report = job.task(part, history, job.last_published, runner)
                reports.append(report)
                if progress:
                    progress(done + 1, len(job.parts))
        return EngineRun(reports)
