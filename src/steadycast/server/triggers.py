"""Runs started over HTTP: a scheduler (Airflow's HTTP operator, a cron ``curl``, a CI job)
asks the server to run a pipeline and polls until it ends.

A run takes minutes to hours, far longer than an HTTP request should stay open, so the server
answers at once (202) with the run's id, chosen before the run starts, and a URL to poll. The
run is the CLI's ``steadycast run NAME --json`` in a child process of its own session: the same
code as from cron, its own memory and CPU accounting, and the server never loads the
forecasting libraries. A child survives a restart of the server (runs are resumable anyway);
what the server keeps in memory is only what a poll needs to report a run that left no record
(one skipped because nothing is new, one that failed before it started).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steadycast.errors import NotFoundError, StoreBusyError
from steadycast.storage import runlog
from steadycast.workspace import Workspace

__all__ = ["RunInProgress", "Started", "Triggers", "triggers_of"]

#: Where the children's ``--json`` output and log lines go, inside the workspace.
FOLDER = "api-runs"
#: How long they are kept.
KEEP_S = 7 * 24 * 3600.0


class RunInProgress(StoreBusyError):
    """A run of the pipeline is already going: answered 409, naming it."""


@dataclass
class Started:
    """A run this server started: its child process and where its output goes."""

    run_id: str
    pipeline: str
    process: subprocess.Popen[bytes]
    output: Path  # the run's ``--json`` document once it ends
    log: Path  # its log lines (stderr)


class Triggers:
    """The runs one server started, by run id (at most a pipeline's worth at a time)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.started: dict[str, Started] = {}
        self._lock = threading.Lock()

    def start_run(self, pipeline: str, *, force: bool, actor: str) -> Started:
        """Start ``steadycast run PIPELINE`` in a child process; a run of the pipeline already
        going (this server's or anyone's: the pipeline's lock) is ``RunInProgress``."""
        from steadycast.pipeline.scope import new_run_id

        with self._lock:
            self._refuse_if_running(pipeline)
            run_id = new_run_id(pipeline)
            folder = self.ws.temp_dir / FOLDER
            folder.mkdir(parents=True, exist_ok=True)
            _prune(folder)
            output, log = folder / f"{run_id}.json", folder / f"{run_id}.log"
            argv = [
                sys.executable,
                "-m",
                "steadycast.cli",
                "--log-format",
                "json",
                "--log-level",
                "INFO",
                "run",
                pipeline,
                "--json",
                "--run-id",
                run_id,
                "-w",
                str(self.ws.root),
            ]
            if force:
                argv.append("--force")
            # The audit log names the token the run was started with, as for the levers.
            env = {**os.environ, "STEADYCAST_ACTOR": actor}
            with output.open("wb") as out, log.open("wb") as err:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=env,
                    cwd=self.ws.root,
                    start_new_session=True,
                )
            started = Started(run_id, pipeline, process, output, log)
            self.started[run_id] = started
        # Reaped when it ends, whether or not anyone polls.
        threading.Thread(target=process.wait, name=f"reap-{run_id}", daemon=True).start()
        return started

    def _refuse_if_running(self, pipeline: str) -> None:
        for s in self.started.values():
            if s.pipeline == pipeline and s.process.poll() is None:
                raise RunInProgress(
                    f"run {s.run_id} of pipeline {pipeline!r} is in progress (started by this "
                    f"server); poll GET /api/v1/pipelines/{pipeline}/runs/{s.run_id}"
                )
        holder = runlog.lock_holder(self.ws.control_path, pipeline)
        if holder is not None:
            raise RunInProgress(
                f"run {holder} of pipeline {pipeline!r} is in progress; wait for it to finish"
            )

    def state(self, pipeline: str, run_id: str) -> dict[str, Any]:
        """Where a run is: ``starting`` (its process is up, its record not yet), ``running``,
        then how it ended (``published``, ``held``, ``failed``, ``skipped``) with its exit code
        (0, 3, 1 or 2 as from the CLI; 4: published, a sink behind) once its process ended."""
        started = self.started.get(run_id)
        record = runlog.get_run(self.ws.control_path, run_id)
        if (started is None or started.pipeline != pipeline) and (
            record is None or record["pipeline"] != pipeline
        ):
            raise NotFoundError(
                f"no run {run_id[:80]!r} of pipeline {pipeline[:80]!r} started or recorded"
            )
        exit_code = started.process.poll() if started is not None else None
        finished = exit_code is not None or (
            started is None and record is not None and record["status"] != "running"
        )
        status = record["status"] if record is not None else "starting"
        if started is not None and exit_code is None and record is not None:
            status = "running"  # its record may say published while it still delivers, alerts
        doc: dict[str, Any] = {
            "pipeline": pipeline,
            "run_id": run_id,
            "status": status,
            "finished": finished,
            "exit_code": exit_code,
            "release_id": record.get("release_id") if record is not None else None,
            "error": record.get("error") if record is not None else None,
            "sinks": [],
        }
        if started is not None and exit_code is not None:
            doc.update(_ended(started, exit_code))
        return doc


def _prune(folder: Path) -> None:
    """The outputs of runs that ended over a week ago go: the run records keep what matters."""
    cutoff = time.time() - KEEP_S
    for path in folder.iterdir():
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


def _ended(started: Started, exit_code: int) -> dict[str, Any]:
    """What the run printed when it ended (its ``--json``), or its last log line."""
    try:
        result = json.loads(started.output.read_text() or "null")
    except (OSError, ValueError):
        result = None
    if isinstance(result, dict):
        return {
            "status": result.get("status", "failed"),
            "release_id": result.get("release_id"),
            "error": result.get("error"),
            "sinks": result.get("sinks") or [],
        }
    return {"status": "failed", "error": _last_line(started.log) or f"exit code {exit_code}"}


def _last_line(path: Path) -> str | None:
    """The last line a child wrote on stderr (a configuration error, a busy lock)."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    if not lines:
        return None
    try:
        entry = json.loads(lines[-1])
    except ValueError:
        return lines[-1].removeprefix("error: ")[:2000]
    return str(entry.get("message") or entry)[:2000] if isinstance(entry, dict) else lines[-1]


_ALL: weakref.WeakKeyDictionary[Any, Triggers] = weakref.WeakKeyDictionary()
_ALL_LOCK = threading.Lock()


def triggers_of(state: Any) -> Triggers:
    """The runs started by the server whose state is ``state`` (one registry per app)."""
    with _ALL_LOCK:
        found = _ALL.get(state)
        if found is None:
            found = _ALL[state] = Triggers(state.ws)
        return found
