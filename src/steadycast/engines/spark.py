"""The Spark engine: partitions of series as Spark tasks, for fleets that outgrow one machine.

How a run's forecast stage maps onto Spark, and why:

- **Input never passes through the driver.** Executors read the run's snapshot themselves
  (``spark.read.parquet`` of ``runs/RUN/snapshot``, partitioned by ``part``) and the rows of a
  partition meet in one task through ``groupBy(slot, part).applyInPandas``. The rows of the
  current release (for the last-published fallback) are written once to Parquet beside the
  snapshot and joined to their partition in Spark (``cogroup``), so no task scans all of them.
- **One Spark task per partition.** ``repartition(n, slot)``, where ``slot`` is, per partition, a
  number whose Spark hash lands in its own bucket (found by asking Spark), so no task runs two
  partitions back to back while a core idles; adaptive execution never merges these buckets.
- **The same work and the same isolation as locally.** Each task runs the stage's task (prepare,
  profile, backtest, select, forecast, fallback, validation) with an ``IsolatedRunner`` in the
  executor: model code in warm worker processes under the pipeline's time and memory limits, as
  many as the task has cores (``spark.task.cpus``), kept warm from one task to the next.
- **Outputs are committed by the task, once** (``commit.py``): written to a staging directory,
  renamed into ``runs/RUN/parts/part=K``; a retried or speculative attempt finds the partition
  committed and reports the committed figures. So the workspace must be on a filesystem every
  executor sees. What returns to the driver is one row per partition: status and accounting
  (CPU and peak memory of the task's process, model usage as JSON), never forecasts.

The session: an active one is used as it is (a notebook on a cluster, ``spark-submit``); else
one is started with the pipeline's ``engine.spark_master`` and stopped when the stage ends.
Either way the Python workers run this interpreter (and with it steadycast and the model
plugins), unless the user named one (``PYSPARK_PYTHON``, ``spark.pyspark.python``, or the
settings of ``spark-submit``). A task's failure reaches the run as the Python exception of the
worker (type and message), its traceback kept in the run's record.
PySpark is imported only here, and only when a run uses this engine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from steadycast.config import ForecastConfig
from steadycast.engines.base import (
    HISTORY_COLUMNS,
    EngineRun,
    Job,
    PartitionTask,
    Progress,
    TaskReport,
    usage_from_json,
    usage_to_json,
)
from steadycast.engines.process import own_cpu_s, peak_rss_mb, reset_peak_rss, warm_runner
from steadycast.errors import ConfigError, SteadycastError
from steadycast.ops.failpoints import FAILPOINT_ENV, configured

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

MIN_JAVA = 17
SNAPSHOT_SCHEMA = "unique_id string, ds timestamp_ntz, y double, part int"
STATUS_SCHEMA = (
    "part string, status string, series long, attempt int, cpu_s double, peak_rss_mb double, "
    "usage string"
)
SLOT = "_steadycast_slot"
#: Set by spark-submit for the Python program it starts: Spark (and Java) are already running.
SUBMITTED = "PYSPARK_GATEWAY_PORT"


# -- can this machine run it? --------------------------------------------------------------------


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def _java_major(java: str) -> int | None:
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def check_available(pipeline: str) -> None:
    """Raise ``ConfigError`` naming what to install when this machine cannot run Spark."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"pipeline {pipeline!r} runs on the spark engine, but PySpark is not installed; "
            "install it with: pip install 'steadycast[spark]'"
        ) from None
    if os.environ.get(SUBMITTED):
        return
    java = _java()
    if java is None:
        raise ConfigError(
            f"pipeline {pipeline!r} runs on the spark engine, which needs Java {MIN_JAVA} or newer, "
            "but no java was found; install a Java runtime (e.g. OpenJDK 17) and put it on PATH "
            "or set JAVA_HOME"
        )
    major = _java_major(java)
    if major is not None and major < MIN_JAVA:
        raise ConfigError(
            f"pipeline {pipeline!r} runs on the spark engine, which needs Java {MIN_JAVA} or newer, "
            f"but {java} is Java {major}; install a newer one and set JAVA_HOME to it"
        )


# -- what runs in the executors ------------------------------------------------------------------


@dataclass(frozen=True)
class _Published:
    """How to turn the release rows Spark hands over back into the driver's frame."""

    columns: list[str]
    dtypes: dict[str, Any]


@dataclass(frozen=True)
class _Payload:
    """Everything a Spark task needs; pickled into each task, so kept small."""

    pipeline: str
    task: PartitionTask
    limits: ForecastConfig
    published: _Published | None


def _conform(rows: pd.DataFrame, published: _Published) -> pd.DataFrame:
    """The release rows as the driver holds them: same columns, dtypes and row order."""
    frame = rows[published.columns].copy()
    for column, dtype in published.dtypes.items():
        if isinstance(dtype, pd.DatetimeTZDtype):
            local = pd.to_datetime(frame[column]).dt.tz_localize("UTC")
            frame[column] = local.dt.tz_convert(dtype.tz).astype(dtype)
        elif frame[column].dtype != dtype:
            frame[column] = frame[column].astype(dtype)
    if {"unique_id", "ds"} <= set(frame.columns):
        frame = frame.sort_values(["unique_id", "ds"], kind="stable")
    return frame.reset_index(drop=True)


def _run_partition(
    payload: _Payload, key: tuple[Any, ...], history: pd.DataFrame, rows: pd.DataFrame | None
) -> pd.DataFrame:
    """One partition in an executor: the stage's task with an isolated runner, then one row."""
    from pyspark import TaskContext

    part = f"part={int(key[-1])}"
    context = TaskContext.get()
    attempt = context.attemptNumber() if context else 0
    cores = context.cpus() if context else 1
    reset_peak_rss()
    cpu = own_cpu_s()
    try:
        report = payload.task.committed(part)
        if report is None:
            published = None
            if payload.published is not None and rows is not None:
                published = _conform(rows, payload.published)
            limits = payload.limits
            runner = warm_runner(max(1, cores), limits.timeout_s, limits.memory_mb)
            report = payload.task(part, history[HISTORY_COLUMNS], published, runner)
    except Exception as exc:
        # Spark shows the driver the last lines of a task's traceback; this one names the place.
        raise RuntimeError(
            f"steadycast: pipeline {payload.pipeline!r}, partition {part}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    report = replace(report, attempt=attempt, cpu_s=own_cpu_s() - cpu, peak_rss_mb=peak_rss_mb())
    return pd.DataFrame(
        {
            "part": [report.part],
            "status": [report.status],
            "series": [report.series],
            "attempt": [report.attempt],
            "cpu_s": [report.cpu_s],
            "peak_rss_mb": [report.peak_rss_mb],
            "usage": [usage_to_json(report.usage)],
        }
    )


# -- the driver ----------------------------------------------------------------------------------


def _spark_type(kind: pa.DataType, column: str, pipeline: str) -> str:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return "string"
    if pa.types.is_timestamp(kind):
        return "timestamp_ntz"
    for test, name in (
        (pa.types.is_float64, "double"),
        (pa.types.is_float32, "float"),
        (pa.types.is_int64, "bigint"),
        (pa.types.is_int32, "int"),
        (pa.types.is_boolean, "boolean"),
        (pa.types.is_date32, "date"),
    ):
        if test(kind):
            return name
    raise SteadycastError(
        f"pipeline {pipeline!r}: column {column!r} of the current release is of type {kind}, "
        "which the spark engine cannot hand to its tasks"
    )


def _write_published(frame: pd.DataFrame, path: Path, pipeline: str) -> tuple[_Published, str]:
    """Write the release rows for the executors (naive UTC microseconds, which Spark reads
    exactly); returns how to restore them and the Spark schema to read them with."""
    published = _Published(list(frame.columns), {c: frame[c].dtype for c in frame.columns})
    out = frame.copy()
    for column, dtype in published.dtypes.items():
        if isinstance(dtype, pd.DatetimeTZDtype):
            out[column] = out[column].dt.tz_convert("UTC").dt.tz_localize(None)
    table = pa.Table.from_pandas(out, preserve_index=False)
    pq.write_table(table, path, coerce_timestamps="us")
    schema = ", ".join(f"`{f.name}` {_spark_type(f.type, f.name, pipeline)}" for f in table.schema)
    return published, schema


def _failure(exc: BaseException) -> str:
    """What went wrong in a task, from a failed Spark job's message: steadycast's own line (it
    names the partition), else the Python exception of the worker's traceback (``Type: message``,
    the last one of a chain), else the first line. The first line alone is only Spark's frame
    ("An exception was thrown from the Python worker:")."""
    text = str(exc)
    for line in reversed(text.splitlines()):
        if "steadycast: pipeline" in line:
            return line[line.index("steadycast: pipeline") + len("steadycast: ") :].strip()
    raised = _worker_exception(text)
    if raised is not None:
        return raised
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:500] if lines else type(exc).__name__


#: The line of a Python traceback that names the exception: ``pkg.TypeError: message``.
_RAISED = re.compile(
    r"^((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)\b)(:.*)?$"
)


def _worker_exception(text: str) -> str | None:
    """``Type: message`` of the last exception of the last Python traceback in ``text``."""
    start = text.rfind("Traceback (most recent call last):")
    if start < 0:
        return None
    found = None
    for line in text[start:].splitlines():
        match = _RAISED.match(line.rstrip())
        if match:
            found = match.group(1) + (match.group(2) or "")
    return found[:500] if found else None


def _advice(raised: str, python: str) -> str:
    """What to do about a worker that could not import a module: name its interpreter."""
    if not raised.startswith("ModuleNotFoundError"):
        return ""
    return (
        f"; the Spark Python workers ran {python}, which lacks it: install steadycast and the "
        "model plugins there, or set PYSPARK_PYTHON (or spark.pyspark.python) to an interpreter "
        "that has them"
    )


def _watch(
    sc: SparkContext, group: str, tasks: int, progress: Progress, stop: threading.Event
) -> None:
    """Report finished tasks of the stage that runs the partitions, until told to stop."""
    tracker = sc.statusTracker()
    while not stop.wait(1.0):
        done = 0
        with contextlib.suppress(Exception):  # the job may end between two calls
            for job_id in tracker.getJobIdsForGroup(group):
                job = tracker.getJobInfo(job_id)
                for stage_id in job.stageIds if job else []:
                    stage = tracker.getStageInfo(stage_id)
                    if stage and stage.numTasks == tasks:
                        done = max(done, stage.numCompletedTasks)
        progress(done, tasks)


def _use_interpreter(sc: SparkContext) -> None:
    """Give the Python workers the user's interpreter (``PYSPARK_PYTHON``, else the session's
    ``spark.pyspark.python``), else this one: it has steadycast and the model plugins, the
    ``python3`` on the workers' PATH may not. PySpark started from a Python program (not by
    ``spark-submit``, which turns the setting into the variable) reads only the variable and
    falls back to ``python3``, so the choice is set on the context: every Python function it
    ships carries it to the executors."""
    if os.environ.get("PYSPARK_PYTHON") or os.environ.get(SUBMITTED):
        return
    conf = sc.getConf()
    sc.pythonExec = conf.get("spark.pyspark.python") or sys.executable


class SparkEngine:
    """Runs partitions as Spark tasks (``groupBy(...).applyInPandas``)."""

    name = "spark"

    def __init__(self, master: str, pipeline: str) -> None:
        self.master = master
        self.pipeline = pipeline

    def _session(self) -> tuple[SparkSession, bool]:
        """The active session, or a new one (True) that the caller stops."""
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            master = active.sparkContext.master
            if master != self.master:
                log.info("using the active Spark session (master %s, not %s)", master, self.master)
            return active, False
        builder = SparkSession.builder.appName(f"steadycast {self.pipeline}").config(
            "spark.ui.showConsoleProgress", "false"
        )
        if not os.environ.get(SUBMITTED):  # spark-submit's --master and --conf stand
            builder = builder.master(self.master)
        try:
            session = builder.getOrCreate()
        except Exception as exc:
            raise SteadycastError(
                f"pipeline {self.pipeline!r}: could not start Spark with master "
                f"{self.master!r}: {_failure(exc)}"
            ) from exc
        session.sparkContext.setLogLevel("ERROR")
        return session, True

    def run(self, job: Job, progress: Progress | None = None) -> EngineRun:
        if not job.parts:
            return EngineRun([])
        session, started = self._session()
        try:
            sc = session.sparkContext
            _use_interpreter(sc)
            self._forward_failpoint(sc)
            frame = self._plan(session, job)
            rows = self._collect(sc, frame, len(job.parts), progress)
            detail: dict[str, Any] = {
                "master": sc.master,
                "application_id": sc.applicationId,
                "spark_version": session.version,
                "python": sc.pythonExec,
            }
        finally:
            if started:
                session.stop()
        reports = [
            TaskReport(
                part=row["part"],
                status=row["status"],
                series=int(row["series"]),
                usage=usage_from_json(row["usage"]),
                attempt=int(row["attempt"]),
                cpu_s=float(row["cpu_s"]),
                peak_rss_mb=float(row["peak_rss_mb"]),
            )
            for row in rows
        ]
        cpu_s = sum(r.cpu_s for r in reports)
        peak_rss_mb = max((r.peak_rss_mb for r in reports), default=0.0)
        # The tasks' own processes (not their model workers), for the stage record.
        detail.update(task_cpu_s=round(cpu_s, 3), task_peak_rss_mb=round(peak_rss_mb, 1))
        return EngineRun(reports, cpu_s=cpu_s, peak_rss_mb=peak_rss_mb, detail=detail)

    @staticmethod
    def _forward_failpoint(sc: SparkContext) -> None:
        """Executors see the fault injection of the reliability tests, as the driver does."""
        value = configured()
        if value:
            sc.environment[FAILPOINT_ENV] = value
        else:
            sc.environment.pop(FAILPOINT_ENV, None)

    @staticmethod
    def _slots(session: SparkSession, buckets: int) -> list[int]:
        """Per bucket, a number that ``repartition(buckets, col)`` sends to that bucket (Spark's
        own hash decides, so this asks Spark: one small job, no shuffle)."""
        from pyspark.sql import functions as F

        found = (
            session.range(0, 16 * buckets)
            .select(F.expr(f"pmod(hash(id), {buckets})").alias("bucket"), "id")
            .collect()
        )
        slots: dict[int, int] = {}
        for row in found:
            slots.setdefault(int(row["bucket"]), int(row["id"]))
        # A bucket no number reached (vanishingly unlikely) only costs balance, never results.
        return [slots.get(b, b) for b in range(buckets)]

    def _plan(self, session: SparkSession, job: Job) -> DataFrame:
        from pyspark.sql import functions as F

        parts = [int(p.split("=", 1)[1]) for p in job.parts]
        count = len(parts)
        slots = self._slots(session, count)
        pairs = [x for i, p in enumerate(parts) for x in (F.lit(p), F.lit(slots[i]).cast("bigint"))]
        slot_of = F.create_map(*pairs)

        def snapshot() -> DataFrame:
            frame = session.read.schema(SNAPSHOT_SCHEMA).parquet(str(job.snapshot))
            return frame.where(F.col("part").isin(parts))

        history = snapshot().withColumn(SLOT, slot_of[F.col("part")]).repartition(count, SLOT)
        if job.last_published is None:
            payload = _Payload(self.pipeline, job.task, job.limits, None)

            # A plain function (pickled with its payload): PySpark reads its type hints.
            def grouped(key: tuple[Any, ...], rows: pd.DataFrame) -> pd.DataFrame:
                return _run_partition(payload, key, rows, None)

            return history.groupBy(SLOT, "part").applyInPandas(grouped, STATUS_SCHEMA)
        job.scratch.mkdir(parents=True, exist_ok=True)
        path = job.scratch / "last_published.parquet"
        published, schema = _write_published(job.last_published, path, self.pipeline)
        ids = snapshot().select(F.col("unique_id").alias("_uid"), F.col("part").alias("_part"))
        rows = session.read.schema(schema).parquet(str(path))
        rows = (
            rows.join(ids.distinct(), rows["unique_id"] == F.col("_uid"))
            .drop("_uid")
            .withColumnRenamed("_part", "part")
            .withColumn(SLOT, slot_of[F.col("part")])
            .repartition(count, SLOT)
        )
        payload = _Payload(self.pipeline, job.task, job.limits, published)

        def cogrouped(
            key: tuple[Any, ...], left: pd.DataFrame, right: pd.DataFrame
        ) -> pd.DataFrame:
            return _run_partition(payload, key, left, right)

        return (
            history.groupBy(SLOT, "part")
            .cogroup(rows.groupBy(SLOT, "part"))
            .applyInPandas(cogrouped, STATUS_SCHEMA)
        )

    def _collect(
        self, sc: SparkContext, frame: DataFrame, tasks: int, progress: Progress | None
    ) -> list[Any]:
        group = f"steadycast-{secrets.token_hex(6)}"
        sc.setJobGroup(group, f"steadycast: forecast stage of pipeline {self.pipeline}", True)
        stop = threading.Event()
        watcher = None
        if progress is not None:
            watcher = threading.Thread(
                target=_watch, args=(sc, group, tasks, progress, stop), daemon=True
            )
            watcher.start()
        try:
            rows = frame.collect()
        except KeyboardInterrupt:
            sc.cancelJobGroup(group)
            raise
        except Exception as exc:
            raised = _failure(exc)
            raise SteadycastError(
                f"pipeline {self.pipeline!r}: the Spark job of the forecast stage failed "
                f"(master {sc.master}): {raised}{_advice(raised, sc.pythonExec)}"
            ) from exc
        finally:
            stop.set()
            if watcher is not None:
                watcher.join()
            sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
        if progress is not None:
            progress(tasks, tasks)
        return rows
