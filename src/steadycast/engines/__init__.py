"""Engines: where the per-series work of a run happens.

One explicit choice per run, the pipeline's ``[engine]`` table (or ``steadycast run --engine``):

    local   partitions on this machine, one process per core (``pool.py``), model code in
            isolated worker processes (the default);
    spark   partitions as Spark tasks in executors, each with its own isolated workers
            (``pip install 'steadycast[spark]'``; PySpark is imported only when it is chosen).

Everything else of a run (snapshot, checks, gate, publish, incidents, audit) stays in the
workspace, whatever the engine; the interface is in ``base.py``, the exactly-once commit of a
partition's outputs in ``commit.py``.
"""

from __future__ import annotations

from steadycast.config import EngineConfig
from steadycast.engines.base import Engine, EngineRun, Job, PartitionTask, TaskReport
from steadycast.engines.local import LocalEngine
from steadycast.engines.pool import PartitionPool

__all__ = [
    "Engine",
    "EngineRun",
    "Job",
    "LocalEngine",
    "PartitionTask",
    "TaskReport",
    "check_engine",
    "create_engine",
]


def check_engine(config: EngineConfig, pipeline: str) -> None:
    """Raise ``ConfigError`` (naming what to install) if this machine cannot run the engine."""
    if config.name == "spark":
        from steadycast.engines.spark import check_available

        check_available(pipeline)


def create_engine(config: EngineConfig, pipeline: str, pool: PartitionPool | None = None) -> Engine:
    """The engine a pipeline's run uses; the local engine works in the run's ``pool``."""
    if config.name == "spark":
        from steadycast.engines.spark import SparkEngine

        return SparkEngine(config.spark_master, pipeline)
    return LocalEngine(pool)
