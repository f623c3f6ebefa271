"""Sinks: where each published release is also written (a PostgreSQL table, a Parquet
dataset), configured per pipeline in ``[[sinks]]`` tables. See docs/sinks.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from steadycast.config import SinkConfig
    from steadycast.sinks.base import Sink


def open_sink(cfg: SinkConfig) -> Sink:
    """The sink a ``[[sinks]]`` table describes; drivers are imported only when used."""
    if cfg.kind == "postgresql":
        from steadycast.sinks.postgres import PostgresSink

        return PostgresSink(cfg)
    from steadycast.sinks.parquet import ParquetSink

    return ParquetSink(cfg)
