"""The local engine: every partition on this machine, in one process per core.

Partitions stream: a process holds one partition's history at a time, so memory is bounded by
the partition size times the number of processes, whatever the size of the fleet. With several
processes (``pool.py``) each works on its own partition with its own warm, isolated model worker,
so the per-series work around the models (prepare, profile, route, validate, select, commit)
runs on every core too; with one process (one partition, or ``forecast.workers = 1``) the
partitions run in the run process, one after another, and every model call of a partition
spreads over a pool of ``forecast.workers`` model workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from steadycast.config import ForecastConfig
from steadycast.engines.base import (
    HISTORY_COLUMNS,
    EngineRun,
    Job,
    PartitionTask,
    Progress,
    TaskReport,
)
from steadycast.engines.pool import PartitionPool, ProcessesUsage
from steadycast.engines.process import warm_runner
from steadycast.models.isolation import IsolatedRunner


def read_partition(directory: Path) -> pd.DataFrame:
    """The snapshot rows of one partition (every Parquet file of its directory)."""
    files = sorted(directory.glob("*.parquet"))
    tables = [pq.read_table(f, columns=HISTORY_COLUMNS) for f in files]
    return pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame(columns=HISTORY_COLUMNS)


def partition_ids(directory: Path) -> np.ndarray:
    """The series of one partition, read from its ``unique_id`` column only."""
    files = sorted(directory.glob("*.parquet"))
    if not files:
        return np.array([], dtype=object)
    ids = pa.concat_tables([pq.read_table(f, columns=["unique_id"]) for f in files])["unique_id"]
    return np.asarray(pc.unique(ids).to_pylist(), dtype=object)


class _PublishedIndex:
    """The current release's rows, found by series in O(log n): what a partition's task gets of
    them (the rows of its own series, in the release's order), instead of the whole release."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.order = np.argsort(frame["unique_id"].to_numpy(dtype=object), kind="stable")
        self.ids = frame["unique_id"].to_numpy(dtype=object)[self.order]

    def rows_for(self, ids: np.ndarray) -> pd.DataFrame:
        lo = np.searchsorted(self.ids, ids, side="left")
        hi = np.searchsorted(self.ids, ids, side="right")
        starts, lengths = lo[hi > lo], (hi - lo)[hi > lo]
        if not len(lengths):
            return self.frame.iloc[:0]
        offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        positions = offsets + np.arange(int(lengths.sum()))
        return self.frame.iloc[np.sort(self.order[positions])]


@dataclass(frozen=True)
class _PartitionCall:
    """One partition's task as a partition process runs it (picklable)."""

    task: PartitionTask
    directory: Path
    published: pd.DataFrame | None
    limits: ForecastConfig
    workers: int

    def __call__(self) -> TaskReport:
        part = self.directory.name
        report = self.task.committed(part)
        if report is not None:
            return report
        runner = warm_runner(self.workers, self.limits.timeout_s, self.limits.memory_mb)
        return self.task(part, read_partition(self.directory), self.published, runner)


class LocalEngine:
    """Runs every partition on this machine; the default."""

    name = "local"

    def __init__(self, pool: PartitionPool | None = None) -> None:
        self.pool = pool

    def run(self, job: Job, progress: Progress | None = None) -> EngineRun:
        if not job.parts:
            return EngineRun([])
        if self.pool is None or not self.pool.parallel:
            return self._in_this_process(job, progress)
        return self._in_processes(job, self.pool, progress)

    @staticmethod
    def _in_this_process(job: Job, progress: Progress | None) -> EngineRun:
        reports: list[TaskReport] = []
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
        return EngineRun(reports, detail={"processes": 1})

    @staticmethod
    def _in_processes(job: Job, pool: PartitionPool, progress: Progress | None) -> EngineRun:
        published = None if job.last_published is None else _PublishedIndex(job.last_published)
        # Model workers per partition process: the pipeline's workers shared among them.
        workers = max(1, (job.limits.workers or pool.processes) // pool.processes)

        def call_for(part: str) -> _PartitionCall:
            directory = job.snapshot / part
            rows = None if published is None else published.rows_for(partition_ids(directory))
            return _PartitionCall(job.task, directory, rows, job.limits, workers)

        reports: list[TaskReport] = []
        used = ProcessesUsage()
        for done in pool.run(job.parts, call_for):
            reports.append(
                TaskReport(
                    done.result.part,
                    done.result.status,
                    done.result.series,
                    done.result.usage,
                    attempt=done.attempt,
                    cpu_s=done.cpu_s,
                    peak_rss_mb=done.peak_rss_mb,
                )
            )
            used.add(done)
            if progress:
                progress(len(reports), len(job.parts))
        detail = {
            "processes": pool.processes,
            "process_restarts": pool.restarts,
            "partition_processes_peak_rss_mb": round(used.peak_rss_mb, 1),
        }
        return EngineRun(reports, cpu_s=used.cpu_s, peak_rss_mb=used.peak_rss_mb, detail=detail)
