"""What a process that works on partitions measures and keeps: its CPU time, its peak memory
and its warm pool of model workers. Shared by the engines whose tasks run in processes other
than the run's (the local engine's partition processes, Spark's Python workers)."""

from __future__ import annotations

import atexit
import contextlib
import resource

from steadycast.models.isolation import IsolatedRunner


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reset_peak_rss() -> None:
    """Start a new peak-memory reading for this process (Linux; a no-op elsewhere)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def peak_rss_mb() -> float:
    """This process's peak memory since the last ``reset_peak_rss``."""
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_runners: dict[tuple[int, float, int], IsolatedRunner] = {}


def warm_runner(workers: int, timeout_s: float, memory_mb: int) -> IsolatedRunner:
    """This process's pool of model workers, started by its first task and reused by the next
    ones, so their start-up (seconds: pandas and statsforecast imports) is paid once per
    process, not once per partition.

    Model workers end with this process: they exit when its end of their socket closes,
    however it dies. Tasks read usage as differences, so sharing the pool changes no figure.
    """
    key = (workers, timeout_s, memory_mb)
    if key not in _runners:
        for stale in _runners.values():
            stale.close()
        _runners.clear()
        runner = IsolatedRunner(workers=workers, timeout_s=timeout_s, memory_mb=memory_mb)
        runner.start()
        atexit.register(runner.close)
        _runners[key] = runner
    return _runners[key]
