"""The exit code of ``run --all`` / ``--select``: the outcome most in need of a person."""

from __future__ import annotations

import pytest

from steadycast.pipeline.many import Outcome, exit_code


@pytest.mark.parametrize(
    ("codes", "worst"),
    [
        ([], 0),
        ([0, 0], 0),
        ([0, 3], 3),  # held: the last good release is still served
        ([3, 1, 0], 1),  # a failure needs a person more than a hold
        ([1, 2, 3], 2),  # a pipeline that cannot even start, most of all
        ([0, 7], 7),  # a code it does not rank is not hidden
    ],
)
def test_the_worst_exit_code_wins(codes: list[int], worst: int) -> None:
    outcomes = [Outcome(f"p{i}", code, 0.0) for i, code in enumerate(codes)]
    assert exit_code(outcomes) == worst
