"""Run model code in worker processes with a time limit and a memory limit.

Model code, a plugin's above all, may hang, spin, allocate without bound, crash the interpreter,
call ``sys.exit``, fork, or print megabytes. None of that may reach the platform: each task runs
in a worker process (``_worker.py``) and every way it can end badly becomes a ``ModelError``
whose message says what happened:

    timed out after 5.0 s              the parent killed the worker's process group at the deadline
    killed by signal SIGSEGV           the worker died of a signal (faulthandler's frame appended)
    exceeded memory limit of 1024 MB   an allocation failed under the address-space limit
    exited with code 3                 sys.exit / os._exit in model code
    raised ValueError: ...             an ordinary exception (traceback kept as ``__cause__``)

How, and why this way:

- **Workers are started with ``subprocess`` in their own session** (``start_new_session``), with
  an explicit environment: ``OPENBLAS_NUM_THREADS=1`` (OpenBLAS buffers otherwise eat the address
  space), ``OMP_NUM_THREADS=1`` and ``OMP_WAIT_POLICY=passive`` (LightGBM spins otherwise). Not
  ``multiprocessing``: its fork start method is unsafe in a threaded parent, and its forkserver
  takes the environment of whoever starts it first.
- **At the deadline the whole process group gets SIGKILL** (``os.killpg``), so children forked by
  model code die with the worker; so do descendants that left the group with ``setsid``, which
  the worker keeps as their sub-reaper (Linux ``PR_SET_CHILD_SUBREAPER``) and the parent lists
  before the kill. Between tasks the worker kills whatever model code left running. Nothing is
  left behind either way (on Linux; elsewhere a descendant that calls ``setsid`` can escape).
- **Workers die with the process that started them**, however it dies (``_lifeline.py``): the
  parent-death signal is armed before the worker imports anything, and a small guard process
  forked by the worker ends the worker's whole session when the worker dies, so model code
  running in a child of the worker stops too instead of computing until its time limit.
- **The memory limit is RLIMIT_AS on top of the warm worker** (about 520 MB of address space for
  Python, pandas and statsforecast): ``memory_mb`` is what model code may add. An address-space
  limit counts virtual memory, so it is conservative; it is what turns a 10 GB allocation into a
  MemoryError instead of a visit from the kernel's OOM killer.
- **Model output is thrown away**: file descriptors 1 and 2 of model code are /dev/null, so a
  plugin printing megabytes can neither block on a full pipe nor fill a disk.
- **Workers are warm and reused**: each imports pandas and statsforecast once (the slow part of
  a start) and then serves tasks; a worker that was killed or ran out of memory is replaced at once.
- **Models are created inside the worker** from the registry by name, so a plugin is imported
  there and its import crash is contained like any other.
- **Resources are accounted per model name** (``usage()``): the worker's CPU time (user + system,
  including reaped children) over each task, and its peak RSS during the task (VmHWM, reset per
  task), read by the parent from /proc via psutil, also for tasks that were killed.

Cost: starting a worker is dominated by the imports of pandas and statsforecast; on a warm
worker a task adds only the pickling of its frames there and back over a socket and two /proc
reads to the model's own time. ``run_model`` pays the start on every call, so anything that runs
more than a handful of tasks should hold an ``IsolatedRunner`` open.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd
import psutil

from steadycast import _lifeline as lifeline
from steadycast.errors import ModelError, ModelOutputError, SteadycastError
from steadycast.models.base import ForecastTask

Task = tuple[str, Mapping[str, Any], pd.DataFrame, ForecastTask]

WORKER_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "passive",
    "PYTHONFAULTHANDLER": "1",
    # Model code's warnings go nowhere (its stderr is /dev/null); a PYTHONWARNINGS=error
    # inherited from a test run or CI must not turn a library's DeprecationWarning into a failure.
    "PYTHONWARNINGS": "ignore",
}
#: Seconds a new worker may take to import pandas and statsforecast.
START_TIMEOUT_S = 120.0
# Run with the module's name as its first argument, so the process is recognisable by it.
_WORKER_MAIN = (
    "import sys\nfrom steadycast.models._worker import main\nsys.exit(main(sys.argv[1:]))\n"
)


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, kept as the ``__cause__``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


@dataclass
class ModelUsage:
    """What one model cost across the tasks of a runner."""

    tasks: int = 0
    failures: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0  # user + system of the worker and its reaped children
    peak_rss_mb: float = 0.0  # highest peak RSS of a worker during one of its tasks


def _source_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _crash_frame(stderr_path: Path) -> str:
    """The innermost frame of model code in faulthandler's dump of a fatal signal, if any.

    faulthandler lists frames innermost first; frames in the standard library (ctypes, say) say
    less about the culprit than the first frame outside it, so that one is preferred.
    """
    try:
        with stderr_path.open("rb") as log:
            log.seek(max(0, stderr_path.stat().st_size - 8192))
            tail = log.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    starts = [i for i, line in enumerate(tail) if line.startswith(("Current thread", "Thread 0x"))]
    if not starts:
        return ""
    frames = []
    for line in tail[starts[-1] + 1 :]:
        if not line.strip().startswith("File "):
            break
        frames.append(line.strip())
    stdlib = sysconfig.get_paths()["stdlib"]
    outside = [f for f in frames if not f.startswith(f'File "{stdlib}')]
    return (outside or frames or [""])[0]


class _Worker:
    """One worker process and the parent's end of its socket."""

    def __init__(self, memory_mb: int, timeout_s: float) -> None:
        parent_sock, child_sock = socket.socketpair()
        # Closed in close(): it lives as long as the worker, so no with-block fits.
        self.stderr = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="steadycast-worker-", suffix=".log"
        )
        env = {**os.environ, **WORKER_ENV}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_source_root(), env.get("PYTHONPATH")]))
        # ``-c`` rather than ``-m``: the worker is armed to die with this process before it
        # imports anything (``lifeline.prelude``), not seconds later.
        program = lifeline.prelude(os.getpid()) + _WORKER_MAIN
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                program,
                "steadycast.models._worker",
                str(child_sock.fileno()),
                str(memory_mb),
                str(timeout_s),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            pass_fds=(child_sock.fileno(),),
            start_new_session=True,
            env=env,
        )
        child_sock.close()
        self.conn = Connection(parent_sock.detach())
        self.pid = self.proc.pid
        self.started = time.monotonic()
        self.ready = False
        self.limit_mb = 0
        # The task in flight: (index in map, model name, wall start, deadline, cpu at start).
        self.task: tuple[int, str, float, float, float] | None = None

    def cpu_seconds(self) -> float:
        try:
            t = psutil.Process(self.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system + t.children_user + t.children_system)

    def peak_rss_mb(self) -> float:
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        try:
            return float(psutil.Process(self.pid).memory_info().rss) / 2**20
        except psutil.Error:
            return 0.0

    def kill(self) -> None:
        """SIGKILL the worker's whole process group and its descendants, and reap the worker.

        The group catches what model code forked; the descendants (the worker is their
        sub-reaper, so orphans stay under it) also catch what left the group with ``setsid``.
        """
        try:
            descendants = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for proc in descendants:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        self.close()

    def stop(self) -> None:
        """Ask the worker to finish, then make sure its group is gone."""
        with contextlib.suppress(OSError):
            self.conn.send(None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        self.kill()

    def close(self) -> None:
        self.conn.close()
        self.stderr.close()

    def reap(self) -> tuple[float, float]:
        """Wait for the dead worker; return its lifetime CPU seconds and peak RSS (MB).

        ``os.wait4`` instead of ``Popen.wait`` because it also returns the resource usage,
        which /proc no longer has once a process has died.
        """
        if self.proc.returncode is not None:
            return 0.0, 0.0
        try:
            _, status, rusage = os.wait4(self.pid, 0)
        except ChildProcessError:
            self.proc.wait()
            return 0.0, 0.0
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss / 1024

    def death(self) -> str:
        """Why the worker process ended, in words; it must have been reaped."""
        code = self.proc.wait()
        if code < 0:
            frame = _crash_frame(Path(self.stderr.name))
            where = f" ({frame})" if frame else ""
            return f"killed by signal {_signal_name(-code)}{where}"
        return f"exited with code {code}"


class IsolatedRunner:
    """A pool of warm worker processes that run model code under time and memory limits.

    Use as a context manager; leaving it stops every worker and its process group. One thread
    drives a runner (``run`` and ``map`` are not safe to call concurrently); parallelism comes
    from the workers.
    """

    def __init__(self, workers: int = 0, timeout_s: float = 600.0, memory_mb: int = 4096) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, not {timeout_s}")
        if memory_mb < 64:
            raise ValueError(f"memory_mb must be at least 64, not {memory_mb}")
        self.workers = workers if workers > 0 else (os.cpu_count() or 1)
        self.timeout_s = float(timeout_s)
        self.memory_mb = int(memory_mb)
        self._pool: list[_Worker] = []
        self._usage: dict[str, ModelUsage] = {}
        self._open = False

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> IsolatedRunner:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the workers (they warm up in the background)."""
        if not self._open:
            self._pool = [self._new_worker() for _ in range(self.workers)]
            self._open = True

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Block until every worker has finished warming up (or raise ``SteadycastError``).

        Not needed before ``run`` or ``map``, which wait for workers as they need them; useful
        to keep the start-up out of a measurement or a deadline.
        """
        deadline = time.monotonic() + timeout_s
        while not all(w.ready for w in self._pool):
            starting = [w for w in self._pool if not w.ready]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SteadycastError(f"model workers did not start within {timeout_s:.0f} s")
            for conn in wait([w.conn for w in starting], remaining):
                worker = next(w for w in starting if w.conn is conn)
                self._receive(worker, {})

    def close(self) -> None:
        """Stop every worker; nothing of the pool is left running afterwards."""
        for worker in self._pool:
            worker.stop()
        self._pool = []
        self._open = False

    def _new_worker(self) -> _Worker:
        return _Worker(self.memory_mb, self.timeout_s)

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._pool[self._pool.index(worker)] = self._new_worker()

    # -- running --------------------------------------------------------------------------------

    def run(
        self, name: str, params: Mapping[str, Any], history: pd.DataFrame, task: ForecastTask
    ) -> pd.DataFrame:
        """Run one model on one batch; raise ``ModelError`` if it fails in any way."""
        (result,) = self.map([(name, params, history, task)])
        if isinstance(result, ModelError):
            raise result
        return result

    def map(self, tasks: Iterable[Task]) -> Iterator[pd.DataFrame | ModelError]:
        """Run tasks on all workers in parallel; yield each result or ``ModelError`` in order."""
        if not self._open:
            raise RuntimeError("IsolatedRunner is not started; use it as a context manager")
        queue = iter(enumerate(tasks))
        results: dict[int, pd.DataFrame | ModelError] = {}
        next_out = 0
        # One task looked ahead, so the end of the queue is known without a free worker: after
        # a kill the last results are returned at once, not after the replacement warms up.
        upcoming = next(queue, None)
        try:
            while True:
                for worker in self._pool:
                    if upcoming is None:
                        break
                    if worker.ready and worker.task is None:
                        self._send(worker, upcoming[0], upcoming[1])
                        upcoming = next(queue, None)
                while next_out in results:
                    yield results.pop(next_out)
                    next_out += 1
                busy = [w for w in self._pool if w.task is not None]
                if upcoming is None and not busy:
                    return
                self._wait_and_collect(results)
        finally:
            # The caller stopped early, or something broke: end the tasks still in flight.
            for worker in list(self._pool):
                if worker.task is not None:
                    self._replace(worker)

    def _send(self, worker: _Worker, index: int, task: Task) -> None:
        name, params, history, forecast_task = task
        now = time.monotonic()
        worker.task = (index, name, now, now + self.timeout_s, worker.cpu_seconds())
        # If the worker died, _wait_and_collect sees its closed socket and says why.
        with contextlib.suppress(OSError):
            worker.conn.send((name, dict(params), history, forecast_task))

    def _wait_and_collect(self, results: dict[int, pd.DataFrame | ModelError]) -> None:
        now = time.monotonic()
        deadlines = [w.task[3] for w in self._pool if w.task is not None]
        deadlines += [w.started + START_TIMEOUT_S for w in self._pool if not w.ready]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        readable = set(wait([w.conn for w in self._pool], timeout))
        for worker in list(self._pool):
            if worker.conn in readable:
                self._receive(worker, results)
            elif worker.task is not None and time.monotonic() >= worker.task[3]:
                timed_out = ModelError(worker.task[1], f"timed out after {self.timeout_s:.1f} s")
                self._finish(worker, results, timed_out)
                self._replace(worker)
            elif not worker.ready and time.monotonic() >= worker.started + START_TIMEOUT_S:
                worker.kill()
                raise SteadycastError(
                    f"a model worker did not start within {START_TIMEOUT_S:.0f} s"
                )

    def _receive(
        self,
        worker: _Worker,
        results: dict[int, pd.DataFrame | ModelError],
    ) -> None:
        try:
            reply = worker.conn.recv()
        except (EOFError, OSError):
            cpu, peak = worker.reap()
            reason = worker.death()
            if not worker.ready:
                log = Path(worker.stderr.name).read_text(errors="replace")[-2000:]
                worker.kill()
                self._pool.remove(worker)
                raise SteadycastError(f"a model worker failed to start ({reason}): {log}") from None
            if worker.task is not None:
                died = ModelError(worker.task[1], reason)
                self._finish(worker, results, died, measured=(cpu, peak))
            self._replace(worker)
            return
        if not worker.ready:
            _, _, worker.limit_mb = reply
            worker.ready = True
            return
        if worker.task is None:
            return
        name = worker.task[1]
        kind = reply[0]
        if kind == "ok":
            self._finish(worker, results, reply[1])
            return
        problem, trace = reply[1], reply[2]
        if kind == "memory":
            error: ModelError = ModelError(name, f"exceeded memory limit of {self.memory_mb} MB")
        elif kind == "output":
            error = ModelOutputError(name, problem)
        else:
            error = ModelError(name, problem)
        if trace:
            error.__cause__ = RemoteTraceback(trace)
        self._finish(worker, results, error)
        if kind == "memory":
            self._replace(worker)

    def _finish(
        self,
        worker: _Worker,
        results: dict[int, pd.DataFrame | ModelError],
        result: pd.DataFrame | ModelError,
        measured: tuple[float, float] | None = None,
    ) -> None:
        """Record the task's resources and result; the worker is free afterwards.

        ``measured`` is (cpu seconds, peak RSS MB) of a worker that already died, whose /proc
        entry is gone; otherwise both are read from the live worker.
        """
        if worker.task is None:
            return
        index, name, started, _, cpu_start = worker.task
        cpu, peak = measured or (worker.cpu_seconds(), worker.peak_rss_mb())
        usage = self._usage.setdefault(name, ModelUsage())
        usage.tasks += 1
        usage.failures += isinstance(result, ModelError)
        usage.wall_s += time.monotonic() - started
        usage.cpu_s += max(0.0, cpu - cpu_start)
        usage.peak_rss_mb = max(usage.peak_rss_mb, peak)
        results[index] = result
        worker.task = None

    def usage(self) -> dict[str, ModelUsage]:
        """Accumulated cost per model name since the runner was created."""
        return {name: ModelUsage(**vars(u)) for name, u in self._usage.items()}

    def worker_pids(self) -> list[int]:
        """Process ids (= process-group ids) of the current workers, for monitoring and tests."""
        return [w.pid for w in self._pool]


def run_model(
    name: str,
    params: Mapping[str, Any],
    history: pd.DataFrame,
    task: ForecastTask,
    *,
    timeout_s: float,
    memory_mb: int,
) -> pd.DataFrame:
    """Run one model once in a fresh worker; the caller validates the frame it returns."""
    with IsolatedRunner(workers=1, timeout_s=timeout_s, memory_mb=memory_mb) as runner:
        return runner.run(name, params, history, task)
