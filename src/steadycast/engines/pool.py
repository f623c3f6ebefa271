"""Processes that work on partitions side by side: how a run keeps every core of one machine busy.

A run's per-partition work (the checks of a partition, the forecast of a partition) is handed to
one process per core, one partition at a time each. A partition is never split, so memory stays
bounded by the partition size times the number of processes, whatever the fleet size.

Processes are started with ``spawn`` (the run process has threads: ``fork`` would be unsafe) and
kept for the whole run, so their start-up is paid once. Each dies with the run process, whatever
kills it (Linux parent-death signal, armed before the process imports anything: ``_lifeline.py``),
and its model workers die with it. Processes are started by the thread that runs the pool (the
signal follows the thread that started a process); multiprocessing's resource tracker, which
removes the pool's semaphores if the run is killed, ends when the last of them has gone.

A process that dies while it holds a partition (the kernel's OOM killer, a crash in native
code, a kill) loses only that attempt: the pool is started again and the partitions that were in
flight are given out again, up to ``MAX_ATTEMPTS`` times each, as Spark does with its tasks. So
the work must be idempotent per partition: the forecast task commits a partition once
(``commit.py``), the check task rewrites its own file.

With one process (``forecast.workers = 1``, or a fleet of one partition) nothing is started:
the work runs in the run process itself, one partition after another.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from steadycast._lifeline import spawn_context
from steadycast.engines.process import own_cpu_s, peak_rss_mb, reset_peak_rss
from steadycast.errors import SteadycastError

R = TypeVar("R")

#: Attempts per partition before the run gives up on it (Spark's default task.maxFailures).
MAX_ATTEMPTS = 4


@dataclass(frozen=True)
class Done(Generic[R]):
    """One partition's result, with what its attempt cost in the process that ran it."""

    key: str
    result: R
    attempt: int  # 0 for the first attempt
    cpu_s: float
    peak_rss_mb: float
    pid: int


@dataclass
class ProcessesUsage:
    """What partition processes cost over one stage. CPU adds up; the processes run side by
    side, so their peaks add up too (an upper bound of what they held at once)."""

    cpu_s: float = 0.0
    peaks: dict[int, float] = field(default_factory=dict)

    def add(self, done: Done[Any]) -> None:
        self.cpu_s += done.cpu_s
        self.peaks[done.pid] = max(self.peaks.get(done.pid, 0.0), done.peak_rss_mb)

    @property
    def peak_rss_mb(self) -> float:
        return sum(self.peaks.values())


def processes_for(workers: int, partitions: int) -> int:
    """How many partition processes a run uses: ``workers`` (0: one per core), never more than
    there are partitions."""
    return max(1, min(workers or os.cpu_count() or 1, partitions))


def _ignore_ctrl_c() -> None:
    """Initializer of a partition process. Ctrl-C reaches the whole process group; the run
    process decides what happens. (Dying with the run is armed earlier, before the process
    imports anything: ``lifeline.spawn_context``.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _measured(call: Callable[[], R]) -> tuple[R, float, float, int]:
    reset_peak_rss()
    cpu = own_cpu_s()
    result = call()
    return result, own_cpu_s() - cpu, peak_rss_mb(), os.getpid()


class PartitionPool:
    """Runs per-partition calls in ``processes`` processes (in this one when ``processes`` is 1).

    Use as a context manager; ``run`` may be called several times (one stage after another) and
    reuses the same processes.
    """

    def __init__(self, processes: int, what: str = "partition") -> None:
        self.processes = max(1, processes)
        self.what = what
        self._executor: ProcessPoolExecutor | None = None
        self.restarts = 0
        # CPU the pool's processes reported for the calls they finished, over every ``run``:
        # what the stages that ran them counted, and what reaping them returns once more.
        self.reported_cpu_s = 0.0

    def __enter__(self) -> PartitionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def parallel(self) -> bool:
        return self.processes > 1

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.processes,
                mp_context=spawn_context(),
                initializer=_ignore_ctrl_c,
            )
        return self._executor

    def run(
        self, keys: Iterable[str], call_for: Callable[[str], Callable[[], R]]
    ) -> Iterator[Done[R]]:
        """Run ``call_for(key)()`` for each key; each result as soon as it is done (in the order
        they finish when parallel). Calls are made when they are handed out, so only those in
        flight are in memory.

        Calls must be picklable when the pool is parallel. An exception raised by a call is
        raised here (with a note naming its partition); a process that died is retried as
        described above.
        """
        if not self.parallel:
            for key in keys:
                reset_peak_rss()
                cpu = own_cpu_s()
                result = call_for(key)()
                yield Done(key, result, 0, own_cpu_s() - cpu, peak_rss_mb(), 0)
            return
        waiting = list(keys)
        attempts = dict.fromkeys(waiting, 0)
        running: dict[Future[tuple[R, float, float, int]], str] = {}
        while waiting or running:
            while waiting and len(running) < self.processes:
                key = waiting.pop(0)
                running[self._pool().submit(_measured, call_for(key))] = key
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            lost: list[str] = []
            for future in finished:
                key = running.pop(future)
                try:
                    result, cpu_s, peak_mb, pid = future.result()
                except BrokenProcessPool:
                    lost.append(key)
                    continue
                except Exception as exc:
                    # Raised as in a run on one process; the note says where it happened.
                    exc.add_note(f"in {self.what} {key}")
                    raise
                self.reported_cpu_s += cpu_s
                yield Done(key, result, attempts[key], cpu_s, peak_mb, pid)
            if lost:
                # A broken pool cannot be used again: every partition still in flight is lost
                # with it (what the pool's processes had finished is kept).
                lost += running.values()
                running = {}
                self.close()
                self.restarts += 1
                for key in lost:
                    attempts[key] += 1
                    if attempts[key] >= MAX_ATTEMPTS:
                        raise SteadycastError(
                            f"{self.what} {key}: its process died {MAX_ATTEMPTS} times "
                            "(killed, out of memory, or a crash in native code); see the "
                            "system log"
                        )
                waiting = lost + waiting
