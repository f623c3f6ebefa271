"""The guard of a model worker: ends the worker's session when the worker dies.

Started by the worker (``_worker._start_guard``) as ``python -I -S _guard.py WORKER_PID``, with
SIGTERM blocked and armed as its parent-death signal. The worker itself is killed by its own
parent-death signal the moment the process that started it dies (a run killed mid-forecast);
what model code had forked would then be re-parented to init and go on computing. The guard sees
the worker die (the signal, or a parent that is no longer the worker) and kills every process
left in the worker's session, then exits.

Only the standard library, and nothing else imported: it must start in milliseconds and hold a
few megabytes. Linux only (``/proc``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time


def session_members(session: int) -> list[int]:
    """Live processes whose session is ``session``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command: state, ppid, pgrp, session, ...; a zombie is already dead.
        if fields[0] != b"Z" and int(fields[3]) == session:
            found.append(int(name))
    return found


def end_session(session: int) -> None:
    """SIGKILL every process of ``session`` but this one, until none is left (a process may
    fork while the list is read)."""
    me = os.getpid()
    for _ in range(50):
        members = [pid for pid in session_members(session) if pid != me]
        if not members:
            return
        for pid in members:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    worker = int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    # Checked after arming (done before exec): the worker may be gone already. The timeout
    # only makes the check periodic; the signal is what wakes the guard.
    while os.getppid() == worker:
        signal.sigtimedwait({signal.SIGTERM}, 5.0)
    end_session(os.getsid(0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
