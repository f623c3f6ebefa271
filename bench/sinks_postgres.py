"""The PostgreSQL sink's measurement for bench/sinks.py: a release replacing the previous one
in a table on a local server started for the benchmark (tests/servers/pg_cluster.py), with
PostgreSQL's default durability (fsync on)."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steadycast.sinks.base import ReleaseRows


def postgres_table(
    table: pa.Table, repeats: int, timed: Callable[[Callable[[], object], int], float]
) -> tuple[float, float | None, str]:
    """(seconds, peer seconds, note): the sink's ``write`` (LOCK, DELETE the previous release,
    COPY, COMMIT) against its peer, a plain ``COPY`` of the same rows (the same Arrow CSV) into
    an empty table; medians of ``repeats`` by ``timed``."""
    try:
        from tests.servers.pg_cluster import Unavailable, running_server

        from steadycast.config import PostgresSinkConfig
        from steadycast.sinks.postgres import PostgresSink
    except ImportError as exc:  # psycopg missing from this environment
        return float("nan"), None, f"not measured: {exc}"
    manager = running_server(durable=True)
    try:
        server = manager.__enter__()
    except Unavailable as exc:
        return float("nan"), None, f"not measured: {exc}"
    try:
        os.environ.update(server.env)
        cfg = PostgresSinkConfig(kind="postgresql", database=server.dsn, table="forecasts")
        sink = PostgresSink(cfg)
        where = table.schema.get_field_index("release_id")
        versions = [
            ReleaseRows(
                "bench",
                rid,
                "bench-run",
                table.set_column(where, "release_id", pa.array([rid] * table.num_rows)),
            )
            for rid in ("bench-a", "bench-b")
        ]
        sink.write(versions[1])  # the table holds a release, as after the first run
        turn = iter(range(repeats))
        seconds = timed(lambda: sink.write(versions[next(turn) % 2]), repeats)
        with server.connect() as con:
            con.execute("VACUUM forecasts")  # the peer starts from the same disk state
        peer_seconds = timed(lambda: _plain_copy(server, table), repeats)
    finally:
        manager.__exit__(None, None, None)
    note = "local PostgreSQL 15, fsync on; peer: plain COPY into an empty table"
    return seconds, peer_seconds, note


def _plain_copy(server: object, table: pa.Table) -> None:
    columns = ", ".join(f'"{c}"' for c in table.column_names)
    with server.connect() as con:  # type: ignore[attr-defined]
        con.execute("DROP TABLE IF EXISTS peer")
        con.execute("CREATE TABLE peer (LIKE forecasts INCLUDING DEFAULTS)")
        with (
            con.transaction(),
            con.cursor().copy(f"COPY peer ({columns}) FROM STDIN (FORMAT csv)") as copy,
        ):
            for batch in table.to_batches(max_chunksize=100_000):
                chunk = io.BytesIO()
                pacsv.write_csv(batch, chunk, pacsv.WriteOptions(include_header=False))
                copy.write(chunk.getbuffer())
