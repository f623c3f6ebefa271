"""The run record: runs, their stages and models, and the one-run-per-pipeline lock.

Everything here lives in the control plane (SQLite, WAL), so ``status`` and the server can read
a run's progress while it works, and a run killed at 3 a.m. leaves a record of where it stopped.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steadycast.errors import StoreBusyError
from steadycast.ops import failpoints
from steadycast.ops.resources import Meter, Usage
from steadycast.storage.control import connect, utcnow


@dataclass
class StageRecord:
    """What a stage reports about itself; filled in by the stage's body."""

    name: str
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    series_in: int = 0
    series_out: int = 0
    # Added to the stage's own measure (this process and its reaped children) so that every
    # process that worked for it counts once: negative when reaped processes' CPU was already
    # counted by an earlier stage.
    extra_cpu_s: float = 0.0
    extra_peak_mb: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    usage: Usage | None = None

    def as_dict(self) -> dict[str, Any]:
        u = self.usage or Usage(0.0, 0.0, 0.0)
        return {
            "name": self.name,
            "wall_s": round(u.wall_s, 3),
            "cpu_s": round(u.cpu_s, 3),
            "peak_rss_mb": round(u.peak_rss_mb, 1),
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
        }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def pipeline_lock(control_path: Path, pipeline: str, run_id: str) -> Iterator[None]:
    """Hold the pipeline's run lock; a second run fails fast naming the run in progress.

    A lock left by a process that no longer exists (killed) is taken over, and that run is
    marked as interrupted, so a re-run after a crash needs no manual step.
    """
    host = socket.gethostname()
    with connect(control_path) as con:
        con.execute("BEGIN IMMEDIATE")
        row = con.execute("SELECT * FROM locks WHERE pipeline = ?", (pipeline,)).fetchone()
        if row is not None:
            alive = row["host"] != host or _pid_alive(int(row["pid"]))
            if alive:
                con.execute("ROLLBACK")
                raise StoreBusyError(
                    f"another run of pipeline {pipeline!r} is in progress since {row['since']} "
                    f"(run {row['run_id']}, pid {row['pid']} on {row['host']}); wait for it to finish"
                )
            con.execute(
                "UPDATE runs SET status = 'failed', finished_at = ?, "
                "error = coalesce(error, 'interrupted: the process ended without finishing') "
                "WHERE run_id = ? AND status = 'running'",
                (utcnow(), row["run_id"]),
            )
            con.execute("DELETE FROM locks WHERE pipeline = ?", (pipeline,))
        con.execute(
            "INSERT INTO locks (pipeline, run_id, pid, host, since) VALUES (?, ?, ?, ?, ?)",
            (pipeline, run_id, os.getpid(), host, utcnow()),
        )
        con.execute("COMMIT")
    try:
        yield
    finally:
        with connect(control_path) as con:
            con.execute("DELETE FROM locks WHERE pipeline = ? AND run_id = ?", (pipeline, run_id))


def lock_holder(control_path: Path, pipeline: str) -> str | None:
    """The run holding the pipeline's lock, when its process is alive (a lock left by a
    killed process holds nothing: the next run takes it over)."""
    with connect(control_path) as con:
        row = con.execute("SELECT * FROM locks WHERE pipeline = ?", (pipeline,)).fetchone()
    if row is None:
        return None
    alive = row["host"] != socket.gethostname() or _pid_alive(int(row["pid"]))
    return str(row["run_id"]) if alive else None


def start_run(
    control_path: Path, run_id: str, pipeline: str, engine: str, config_sha256: str
) -> None:
    with connect(control_path) as con:
        con.execute(
            "INSERT INTO runs (run_id, pipeline, status, started_at, engine, config_sha256, pid, host)"
            " VALUES (?, ?, 'running', ?, ?, ?, ?, ?)",
            (run_id, pipeline, utcnow(), engine, config_sha256, os.getpid(), socket.gethostname()),
        )


def update_run(control_path: Path, run_id: str, **fields: Any) -> None:
    if not fields:
        return
    if "detail" in fields and not isinstance(fields["detail"], str):
        fields["detail"] = json.dumps(fields["detail"], default=str, sort_keys=True)
    names = ", ".join(f"{k} = ?" for k in fields)  # keys are ours, never user input
    with connect(control_path) as con:
        con.execute(f"UPDATE runs SET {names} WHERE run_id = ?", (*fields.values(), run_id))


@contextmanager
def stage(control_path: Path, run_id: str, name: str, seq: int) -> Iterator[StageRecord]:
    """Measure a stage and record it (also when it fails, with the error)."""
    record = StageRecord(name)
    started = utcnow()
    failpoints.fail_at(f"stage:{name}")
    with connect(control_path) as con:
        con.execute(
            "INSERT OR REPLACE INTO stages (run_id, name, seq, status, started_at) "
            "VALUES (?, ?, ?, 'running', ?)",
            (run_id, name, seq, started),
        )
    status = "failed"
    meter = Meter()
    try:
        with meter:
            yield record
        status = "ok"
    except BaseException as exc:
        record.detail.setdefault("error", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        u = meter.usage
        record.usage = Usage(
            u.wall_s, u.cpu_s + record.extra_cpu_s, max(u.peak_rss_mb, record.extra_peak_mb)
        )
        with connect(control_path) as con:
            con.execute(
                "UPDATE stages SET status = ?, wall_s = ?, cpu_s = ?, peak_rss_mb = ?, rows_in = ?, "
                "rows_out = ?, rows_rejected = ?, series_in = ?, series_out = ?, detail = ? "
                "WHERE run_id = ? AND name = ?",
                (
                    status,
                    record.usage.wall_s,
                    record.usage.cpu_s,
                    record.usage.peak_rss_mb,
                    record.rows_in,
                    record.rows_out,
                    record.rows_rejected,
                    record.series_in,
                    record.series_out,
                    json.dumps(record.detail, default=str, sort_keys=True),
                    run_id,
                    name,
                ),
            )


def record_model_usage(control_path: Path, run_id: str, usage: dict[str, Any]) -> None:
    with connect(control_path) as con:
        for model, u in usage.items():
            con.execute(
                "INSERT OR REPLACE INTO model_usage (run_id, model, tasks, failures, cpu_s, peak_rss_mb)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, model, u.tasks, u.failures, u.cpu_s, u.peak_rss_mb),
            )


def get_run(control_path: Path, run_id: str) -> dict[str, Any] | None:
    with connect(control_path) as con:
        row = con.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        run = dict(row)
        run["stages"] = [
            dict(r)
            for r in con.execute("SELECT * FROM stages WHERE run_id = ? ORDER BY seq", (run_id,))
        ]
        run["models"] = [
            dict(r) for r in con.execute("SELECT * FROM model_usage WHERE run_id = ?", (run_id,))
        ]
        return run
