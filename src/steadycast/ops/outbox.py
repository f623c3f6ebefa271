"""A background queue for work that must never hold a run up: alert deliveries.

``Outbox.put`` returns at once; one daemon thread works through the queue in order. Waits
between retries go through ``Outbox.wait``, which process exit cuts short. At exit the queue
gets at most ``EXIT_DRAIN_S`` seconds to empty (``atexit``), so a short command such as
``steadycast run`` still delivers what it queued, and an unreachable receiver costs the
command at most that long (a refused connection costs nothing, as no attempt waits any more).
``flush`` waits for the queue to empty, for callers (and tests) that need the outcome now.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

__all__ = ["EXIT_DRAIN_S", "Outbox"]

log = logging.getLogger("steadycast.alerts")

#: The longest a process waits at exit for queued deliveries.
EXIT_DRAIN_S = 3.0

Job = Callable[[], None]


class Outbox:
    """One queue and its worker thread, started on first use (again in a forked child)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closing = threading.Event()
        self._exit_hook = False

    def put(self, job: Job) -> None:
        """Queue ``job``; returns at once."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._queue, self._thread, self._pid = queue.Queue(), None, os.getpid()
                self._closing = threading.Event()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
            if not self._exit_hook:
                atexit.register(self.drain)
                self._exit_hook = True
            self._queue.put(job)

    def wait(self, seconds: float) -> None:
        """Sleep between attempts, unless the process is exiting (then not at all)."""
        if seconds > 0:
            self._closing.wait(seconds)

    @property
    def closing(self) -> bool:
        """True once the process exits: no attempt should wait any more."""
        return self._closing.is_set()

    def pending(self) -> int:
        """Jobs queued or running."""
        return self._queue.unfinished_tasks

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued job has run, at most ``timeout_s``; True when they have."""
        end = time.monotonic() + timeout_s
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                done.wait(left)
        return True

    def drain(self, timeout_s: float = EXIT_DRAIN_S) -> None:
        """At exit: stop waiting between attempts and give the queue ``timeout_s`` to empty."""
        if self._pid != os.getpid() or self._thread is None:
            return
        self._closing.set()
        if not self.flush(timeout_s):
            log.warning(
                "%d alert(s) not delivered: the process exited while they were still being "
                "tried (after %.0f s); see `steadycast incidents` and the audit log",
                self.pending(),
                timeout_s,
            )

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                job()
            except Exception:  # the error boundary: one bad delivery never stops the others
                log.exception("an alert could not be processed")
            finally:
                self._queue.task_done()
