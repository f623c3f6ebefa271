"""Processes that end with the process that started them, however that one ends.

A run starts partition processes, they start model workers, and model code may fork. When the
run process is killed (SIGKILL, the OOM killer, a crash in native code) nothing of it may stay
behind: no forecast computing for minutes for a run that is gone, no process holding the dead
run's stdout or a partition's files.

The kernel does it without the dying process's help: the parent-death signal (Linux
``prctl(PR_SET_PDEATHSIG)``) is sent to a child the moment its parent ends. Three details make it
hold at every moment:

- **Armed first.** The signal is armed by the child's interpreter before it imports anything
  (``prelude``, the first lines of its ``-c`` program): importing pandas takes seconds, and a
  child killed only by its own later code would outlive a run killed just after starting it.
- **Checked after arming.** A parent that died before the ``prctl`` never sends the signal, so
  the child then compares its parent's pid with the one it was given and exits if they differ.
- **Started by a lasting thread.** The signal fires when the *thread* that started the child
  ends, not the process. Children are started by the thread that then drives them (the run's
  thread, a partition process's main thread), never by a short-lived helper thread.

Elsewhere than on Linux nothing is armed; the pipes and sockets between the processes still end
them when they next read.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import signal
import sys
from multiprocessing import popen_spawn_posix, spawn
from typing import Any

__all__ = ["ARMED", "prelude", "spawn_context"]

#: Whether children are armed here (Linux only).
ARMED = sys.platform.startswith("linux")

PR_SET_PDEATHSIG = 1


def prelude(parent_pid: int, signal_number: int = signal.SIGKILL) -> str:
    """Python source to run first in a child of ``parent_pid``: arm the parent-death signal
    (SIGKILL unless told), then exit at once if that parent is already gone. Only the standard
    library's ``ctypes`` and ``os`` are imported, so it costs milliseconds."""
    if not ARMED:
        return ""
    # One short line: it is what ``ps`` shows first of the child's command line.
    return (
        f"import ctypes,os;ctypes.CDLL(None).prctl({PR_SET_PDEATHSIG},{int(signal_number)},0,0,0)"
        f";os.getppid()=={int(parent_pid)} or os._exit(1)\n"
    )


class _ArmedPopen(popen_spawn_posix.Popen):
    """multiprocessing's spawn, with ``prelude`` at the head of the child's ``-c`` program.

    multiprocessing builds the command line with ``spawn.get_command_line`` inside ``_launch``;
    it is wrapped for the duration of the launch only (the launching thread is the only one
    that starts partition processes).
    """

    def _launch(self, process_obj: Any) -> None:
        original = spawn.get_command_line
        head = prelude(os.getpid())

        def armed(**kwds: Any) -> list[str]:
            cmd = list(original(**kwds))
            program = cmd.index("-c") + 1
            cmd[program] = head + cmd[program]
            return cmd

        setattr(spawn, "get_command_line", armed)  # noqa: B010
        try:
            super()._launch(process_obj)  # type: ignore[misc]
        finally:
            setattr(spawn, "get_command_line", original)  # noqa: B010


class _ArmedProcess(multiprocessing.context.SpawnProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _ArmedPopen(process_obj)


class _ArmedContext(multiprocessing.context.SpawnContext):
    Process = _ArmedProcess


def spawn_context() -> multiprocessing.context.BaseContext:
    """The ``spawn`` start method, with every child armed to die with this process."""
    if not ARMED:
        return multiprocessing.get_context("spawn")
    return _ArmedContext()
