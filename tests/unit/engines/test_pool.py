"""The partition pool: results of every partition, once, whatever happens to its processes."""

from __future__ import annotations

import os
import signal
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steadycast.engines.local import _PublishedIndex
from steadycast.engines.pool import MAX_ATTEMPTS, PartitionPool, processes_for
from steadycast.errors import SteadycastError


def square(key: str) -> int:
    return int(key) ** 2


def die_once(marker: Path, key: str) -> str:
    """Kill this process the first time any partition gets here, then work."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return f"{key}:{os.getpid()}"
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def always_die(key: str) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def fail(key: str) -> None:
    raise ValueError(f"bad data in {key}")


def test_one_process_runs_here_and_several_run_side_by_side() -> None:
    keys = [str(i) for i in range(6)]
    with PartitionPool(1) as here:
        done = list(here.run(keys, lambda k: partial(square, k)))
    assert [d.key for d in done] == keys and {d.pid for d in done} == {0}
    with PartitionPool(2) as pool:
        done = list(pool.run(keys, lambda k: partial(square, k)))
    assert sorted((d.key, d.result) for d in done) == [(k, int(k) ** 2) for k in keys]
    assert os.getpid() not in {d.pid for d in done}


def test_a_partition_whose_process_died_is_given_out_again(tmp_path: Path) -> None:
    keys = [str(i) for i in range(5)]
    with PartitionPool(2) as pool:
        done = list(pool.run(keys, lambda k: partial(die_once, tmp_path / "died", k)))
    assert sorted(d.key for d in done) == keys  # every partition once
    assert pool.restarts == 1
    assert max(d.attempt for d in done) == 1


def test_a_partition_that_keeps_killing_its_process_stops_the_run_naming_it() -> None:
    died = f"forecast partition 0: .*died {MAX_ATTEMPTS}"
    with (
        PartitionPool(2, what="forecast partition") as pool,
        pytest.raises(SteadycastError, match=died),
    ):
        list(pool.run(["0"], lambda k: partial(always_die, k)))


def test_an_error_in_a_partition_is_raised_as_it_was_with_the_partition_noted() -> None:
    with (
        PartitionPool(2, what="check partition") as pool,
        pytest.raises(ValueError, match="bad data in part=") as caught,
    ):
        list(pool.run(["part=3", "part=4"], lambda k: partial(fail, k)))
    assert any("check partition part=" in note for note in caught.value.__notes__)


def test_processes_follow_workers_and_never_exceed_partitions() -> None:
    assert processes_for(4, 10) == 4
    assert processes_for(4, 1) == 1
    assert processes_for(0, 1000) == (os.cpu_count() or 1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(list("abcdefgh")), max_size=40),
    st.sets(st.sampled_from(list("abcdefghxyz"))),
)
def test_a_partition_gets_exactly_its_series_rows_of_the_release(
    release_ids: list[str], wanted: set[str]
) -> None:
    release = pd.DataFrame(
        {"unique_id": release_ids, "yhat": np.arange(len(release_ids), dtype=float)}
    )
    got = _PublishedIndex(release).rows_for(np.array(sorted(wanted), dtype=object))
    pd.testing.assert_frame_equal(got, release[release["unique_id"].isin(wanted)])
