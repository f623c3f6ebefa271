"""The forecast stage counts every process's CPU once, whichever engine ran it."""

from __future__ import annotations

import pytest

from steadycast.pipeline.forecast_stage import _unseen_cpu_s


def test_work_on_other_machines_is_added_as_reported() -> None:
    # Spark's executors: nothing reaped here, every reported second is added.
    assert _unseen_cpu_s(reported=100.0, reaped=0.0, counted_before=0.0) == 100.0


def test_reaped_workers_are_not_counted_twice() -> None:
    # Model workers of a run on one partition, reaped when the stage closes them: their whole
    # lives (start-up included) are in the stage's own measure already.
    assert _unseen_cpu_s(reported=40.0, reaped=46.0, counted_before=0.0) == 0.0


def test_partition_processes_reaped_here_leave_the_check_stages_work_to_it() -> None:
    # Partition processes that ran the check stage (12 s, counted there) and the forecast
    # stage (80 s), reaped at its end with 3 s of start-up: the stage keeps 83 s of them.
    extra = _unseen_cpu_s(reported=80.0, reaped=95.0, counted_before=12.0)
    assert 95.0 + extra == pytest.approx(83.0)
