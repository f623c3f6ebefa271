"""The worker process that runs model code for ``isolation.IsolatedRunner``.

Started as ``python -c PROGRAM steadycast.models._worker FD MEMORY_MB TIMEOUT_S`` in its own
session, with the socket ``FD`` to its parent; PROGRAM arms the parent-death signal before
anything is imported (``lifeline.prelude``) and calls ``main``. It starts its guard, imports
pandas and statsforecast once (the warm part), caps its own address space, sends
``("ready", pid, limit_mb)`` and then answers one task at a time: ``(name, params, history,
task)`` -> ``("ok", frame)`` or ``(kind, problem, traceback)``, where kind is ``error``,
``exit`` or ``memory``. ``None`` or a closed socket ends it.

Inside, model code cannot flood the platform: its file descriptors 1 and 2 point at /dev/null.
Only the interpreter's own start-up errors and faulthandler's dump of a fatal signal reach the
stderr file the parent gave us, which the parent reads to explain a crash.

The parent enforces the time limit (it kills the whole process group); what the worker does for
itself: the address-space limit (a runaway allocation is a MemoryError, not the machine's OOM
killer), a CPU-time backstop in case the parent died, and making itself the sub-reaper of
everything model code forks, so that no descendant outlives the task that started it; and a
guard process that ends the worker's whole session when the worker dies, so that model code in a
child of the worker does not go on computing after its parent run was killed (the parent-death
signal kills the worker itself at once, and its orphans would otherwise go to init).
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import resource
import signal
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
#: The guard's pid (see ``_start_guard``), which ``_end_descendants`` leaves alone.
_guard_pid = 0


def _start_guard() -> int:
    """Start the guard (``_guard.py``): a small process that waits for this worker to die,
    however it dies, and then kills every process left in the worker's session (what model code
    forked). Started before the heavy imports, while the worker is small and has one thread;
    armed between fork and exec, so there is no moment when the worker's death goes unseen.
    Linux only."""
    if not sys.platform.startswith("linux"):
        return 0
    worker = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:
        # Its own group, so that it is not mistaken for model code of the worker; same session.
        os.setpgid(0, 0)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # pending until it waits
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        guard = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_guard.py")
        # Only the worker may hold its socket: the parent learns of the worker's death by its
        # close, not by the guard's.
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.execv(sys.executable, [sys.executable, "-I", "-S", guard, str(worker)])
    finally:
        os._exit(1)


def _become_subreaper() -> None:
    """Orphans of model code re-parent to us (not to init), so we can find and end them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the process-group kill still applies
        pass


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def _reset_peak_rss() -> None:
    """Reset VmHWM so the parent reads this task's peak, not the worker's lifetime peak."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def _end_descendants() -> None:
    import psutil

    me = psutil.Process()
    children = [c for c in me.children(recursive=True) if c.pid != _guard_pid]
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(children, timeout=2)


def _cpu_backstop(timeout_s: float) -> None:
    """A CPU-time limit a little past the wall-clock deadline, in case the parent is gone."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    soft = int(used + 2 * timeout_s + 10)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard == resource.RLIM_INFINITY or soft <= hard:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _run_task(message: tuple[str, Any, Any, Any], timeout_s: float) -> tuple[Any, ...]:
    import pandas as pd

    from steadycast.models.base import answer
    from steadycast.models.registry import create_model

    name, params, history, task = message
    _reset_peak_rss()
    _cpu_backstop(timeout_s)
    try:
        model = create_model(name, params)
        out = answer(model, history, task)
    except MemoryError:
        return ("memory", "ran out of memory", "")
    except SystemExit as exc:
        return ("exit", f"exited with code {exc.code} (sys.exit in model code)", "")
    except BaseException as exc:
        return ("error", f"raised {type(exc).__name__}: {exc}", traceback.format_exc())
    finally:
        _end_descendants()
    if not isinstance(out, pd.DataFrame):
        return ("output", f"returned a {type(out).__name__}, not a pandas DataFrame", "")
    return ("ok", out)


def main(argv: list[str]) -> int:
    global _guard_pid
    fd, memory_mb, timeout_s = int(argv[1]), int(argv[2]), float(argv[3])
    _guard_pid = _start_guard()
    conn = Connection(fd)

    # The warm part: what every task needs, imported once per worker.
    import pandas  # noqa: F401
    import statsforecast.models  # noqa: F401

    import steadycast.models.registry  # noqa: F401

    _become_subreaper()
    limit = _address_space() + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    crash_log = os.fdopen(os.dup(2), "w")
    faulthandler.enable(file=crash_log)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)

    conn.send(("ready", os.getpid(), limit // (1024 * 1024)))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return 0
        if message is None:
            return 0
        reply = _run_task(message, timeout_s)
        try:
            conn.send(reply)
        except MemoryError:
            conn.send(("memory", "ran out of memory sending its output", ""))
        except Exception as exc:  # output that cannot be pickled
            conn.send(("output", f"returned output that cannot be sent back ({exc})", ""))
        if reply[0] == "memory":
            return 0  # a worker that hit its limit may be fragmented; the parent starts a new one


if __name__ == "__main__":
    sys.exit(main(sys.argv))
