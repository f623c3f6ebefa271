"""What every reliability test shares: its size (quick in `make test`, long in
`make reliability`) and the figures it reports for docs/RELIABILITY.md."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

LONG = os.environ.get("STEADYCAST_RELIABILITY") == "long"
FIGURES = os.environ.get("STEADYCAST_RELIABILITY_FIGURES", "")


def size(quick: int, long: int, *, env: str = "") -> int:
    """How many times to inject a fault: an explicit variable wins, then the long/quick mode."""
    if env and os.environ.get(env):
        return int(os.environ[env])
    return long if LONG else quick


Record = Callable[..., None]


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Record:
    """Report one figure of a row of the reliability table.

    ``violations`` is the promise-violation count (must be 0); ``value`` is the row's figure
    as text (e.g. "0 torn reads; p99 41 ms"); ``detail`` is free-form context.
    """

    def record(row: str, *, violations: int, value: str, **detail: object) -> None:
        if not FIGURES:
            return
        entry = {
            "row": row,
            "test": request.node.nodeid,
            "violations": violations,
            "value": value,
            "detail": detail,
            "mode": "long" if LONG else "quick",
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        path = Path(FIGURES)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write(json.dumps(entry, default=str) + "\n")

    return record
