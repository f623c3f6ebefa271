"""The engine interface: where the forecast stage's per-partition work runs.

    Engine.run(job, progress) -> EngineRun
        for each partition still to do, somewhere:
            job.task.committed(part) -> TaskReport | None     done by an earlier attempt?
            job.task(part, history, last_published, runner) -> TaskReport

The stage describes the work as a ``Job``: the run's snapshot (``part=K/*.parquet``, one
directory per partition of series), the partitions still to do, the limits for model code and
the task, a small picklable callable that forecasts one partition and commits its outputs under
the run directory (see ``commit.py``). An engine decides only where the task runs, how a
partition's rows reach it and which ``IsolatedRunner`` it gets; it never looks inside the task,
and the task never asks where it runs. What comes back is a ``TaskReport`` per partition: status
and accounting, never forecasts (those are on disk, committed once).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from steadycast.config import ForecastConfig
from steadycast.errors import ModelError
from steadycast.models.isolation import ModelUsage, Task

#: Snapshot columns every engine hands to a task.
HISTORY_COLUMNS = ["unique_id", "ds", "y"]

Progress = Callable[[int, int], None]  # (partitions done, partitions to do)


class ModelRunner(Protocol):
    """What a task needs from ``IsolatedRunner``: run model tasks, say what they cost."""

    def map(self, tasks: Iterable[Task]) -> Iterator[pd.DataFrame | ModelError]: ...

    def usage(self) -> dict[str, ModelUsage]: ...


@dataclass(frozen=True)
class TaskReport:
    """What one partition's task reports back: status and accounting only.

    ``status``: "forecast" (this attempt forecast the partition and committed it), "committed"
    (an earlier or concurrent attempt committed it first; its figures stand) or "empty" (every
    series was set aside by the checks' policies; nothing to commit). ``usage`` is the model
    usage of the committed attempt. ``attempt``, ``cpu_s`` and ``peak_rss_mb`` are filled in by
    engines that run tasks in other processes: the retry number and what the task's own
    process (not its model workers) spent.
    """

    part: str
    status: str
    series: int = 0
    usage: dict[str, ModelUsage] = field(default_factory=dict)
    attempt: int = 0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0


class PartitionTask(Protocol):
    """The unit of work an engine maps over partitions (built by the forecast stage)."""

    def committed(self, part: str) -> TaskReport | None:
        """The report of a partition already committed in this run, else None."""
        ...

    def __call__(
        self,
        part: str,
        history: pd.DataFrame,
        last_published: pd.DataFrame | None,
        runner: ModelRunner,
    ) -> TaskReport:
        """Forecast one partition and commit its outputs.

        ``history``: the partition's snapshot rows (``HISTORY_COLUMNS``, any order);
        ``last_published``: rows of the current release covering at least this partition's
        series, or None when the pipeline has no release.
        """
        ...


@dataclass(frozen=True)
class Job:
    """One forecast stage's work, as an engine sees it."""

    pipeline: str
    snapshot: Path  # holds part=K/*.parquet
    parts: list[str]  # "part=K" directories still to do
    task: PartitionTask
    limits: ForecastConfig
    last_published: pd.DataFrame | None
    scratch: Path  # a directory of the run the engine may write to (seen by every executor)


@dataclass(frozen=True)
class EngineRun:
    """What an engine returns: one report per partition it was given, plus what the stage
    cannot measure itself (CPU and peak memory of processes outside the driver)."""

    reports: list[TaskReport]
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    """Maps the forecast stage's task over partitions; ``local`` and ``spark`` implement it."""

    name: str

    def run(self, job: Job, progress: Progress | None = None) -> EngineRun: ...


# -- model usage: per task, summed over tasks ----------------------------------------------------


def usage_since(
    before: Mapping[str, ModelUsage], after: Mapping[str, ModelUsage]
) -> dict[str, ModelUsage]:
    """What each model cost between two readings of one runner's cumulative ``usage()``.

    Peak memory is not additive: a model that ran in the interval is given the runner's peak
    so far, which is at least its peak in the interval, and whose maximum over intervals is
    the runner's overall peak.
    """
    out = {}
    for name, now in after.items():
        was = before.get(name, ModelUsage())
        if now.tasks == was.tasks:
            continue
        out[name] = ModelUsage(
            tasks=now.tasks - was.tasks,
            failures=now.failures - was.failures,
            wall_s=now.wall_s - was.wall_s,
            cpu_s=now.cpu_s - was.cpu_s,
            peak_rss_mb=now.peak_rss_mb,
        )
    return out


def total_usage(reports: Iterable[TaskReport]) -> dict[str, ModelUsage]:
    """Per-model usage over partitions: counts and times add up, peak memory is the maximum."""
    total: dict[str, ModelUsage] = {}
    for report in reports:
        for name, u in report.usage.items():
            t = total.setdefault(name, ModelUsage())
            t.tasks += u.tasks
            t.failures += u.failures
            t.wall_s += u.wall_s
            t.cpu_s += u.cpu_s
            t.peak_rss_mb = max(t.peak_rss_mb, u.peak_rss_mb)
    return total


def usage_as_dict(usage: Mapping[str, ModelUsage]) -> dict[str, dict[str, Any]]:
    return {name: dict(vars(u)) for name, u in sorted(usage.items())}


def usage_from_dict(data: Mapping[str, Mapping[str, Any]]) -> dict[str, ModelUsage]:
    return {name: ModelUsage(**fields) for name, fields in data.items()}


def usage_to_json(usage: Mapping[str, ModelUsage]) -> str:
    return json.dumps(usage_as_dict(usage))


def usage_from_json(text: str) -> dict[str, ModelUsage]:
    return usage_from_dict(json.loads(text or "{}"))
