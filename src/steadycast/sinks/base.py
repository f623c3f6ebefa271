"""The contract every sink keeps: take one whole release and make it what readers see.

A sink is written after a release is published (or made current again by approve or rollback).
It never decides whether a release is good: the gate did. It must be atomic for its readers (a
reader sees the previous release or the new one, never a mix) and idempotent (writing the same
release twice leaves the same state), because a failed delivery is retried on the next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa


@dataclass(frozen=True)
class ReleaseRows:
    """One release as a sink receives it: every forecast row, with ``release_id`` in each."""

    pipeline: str
    release_id: str
    run_id: str
    rows: pa.Table


class Sink(Protocol):
    """Somewhere a release is written: a database table, a Parquet dataset."""

    @property
    def label(self) -> str:
        """Where it writes, for messages and incidents (never a credential)."""
        ...

    def write(self, release: ReleaseRows) -> None:
        """Make ``release`` the one readers see; raise ``SinkError`` naming the problem."""
        ...
