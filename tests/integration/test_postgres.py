"""PostgreSQL as a source (``read_query``) and a sink (``PostgresSink``), against a real server
on 127.0.0.1 (tests/servers/postgres.py).

The promises: a query's rows arrive with their types; every failure names the database as
``postgresql://user@host:port/db`` and never the password; the sink's readers see the previous
release or the new one, whole, never a mix or an empty table, even when the load fails or its
connection is killed; writing the same release twice changes nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from pydantic import ValidationError

from steadycast.config import PostgresSinkConfig
from steadycast.errors import ConfigError, InputFileError, SinkError
from steadycast.ingestion.postgres import read_query
from steadycast.sinks import open_sink
from steadycast.sinks.base import ReleaseRows
from steadycast.storage import releases, store
from steadycast.workspace import Workspace
from tests.conftest import run_cli
from tests.pipelines import pipeline_toml
from tests.servers.postgres import PostgresServer


@pytest.fixture
def pg(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> PostgresServer:
    """The server, with its password where libpq looks for it (as a user exports it)."""
    for name, value in postgres_server.env.items():
        monkeypatch.setenv(name, value)
    return postgres_server


@pytest.fixture
def table_name(request: pytest.FixtureRequest, pg: PostgresServer) -> Iterator[str]:
    """A table of the test's own, dropped afterwards (the server lives for the session)."""
    name = "t_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[:50]
    yield name
    with pg.connect() as con:
        con.execute(f'DROP TABLE IF EXISTS "{name}"')


def _release(release_id: str, n: int, *, levels: tuple[int, ...] = (80, 95)) -> ReleaseRows:
    """A release of ``n`` forecast rows shaped as published ones are (naive UTC ``ds``)."""
    cols: dict[str, object] = {
        "unique_id": [f"s{i % 50:03d}" for i in range(n)],
        "ds": pd.date_range("2024-03-31", periods=n, freq="min"),
        "yhat": [float(i) for i in range(n)],
        "model": ["SeasonalNaive"] * n,
    }
    for level in levels:
        cols[f"yhat_lo_{level}"] = [-1.0] * n
        cols[f"yhat_hi_{level}"] = [1.0] * n
    rows = pa.Table.from_pandas(pd.DataFrame(cols), preserve_index=False)
    return ReleaseRows("meters", release_id, f"run-{release_id}", rows)


def _held(pg: PostgresServer, table: str) -> list[tuple[str, int]]:
    with pg.connect() as con:
        return con.execute(
            f'SELECT release_id, count(*) FROM "{table}" GROUP BY release_id'
        ).fetchall()


# --- the source ---------------------------------------------------------------------------------


def test_query_rows_arrive_with_their_types(pg: PostgresServer, table_name: str) -> None:
    with pg.connect() as con:
        con.execute(
            f'CREATE TABLE "{table_name}" (sensor text, at timestamptz, kwh numeric, '
            "n int, ok bool, note text)"
        )
        con.execute(
            f'INSERT INTO "{table_name}" VALUES '
            "('m1', '2024-01-01 02:00+02', 1.25, 7, true, 'a,\"b\"\nc'), "
            "('m2', '2023-12-31 19:00-05', NULL, NULL, false, ''), "
            "('m3', NULL, 'NaN', 3, NULL, NULL)"
        )
    table = read_query(
        pg.dsn,
        f'SELECT sensor AS unique_id, at AS ds, kwh AS y, n, ok, note FROM "{table_name}" '
        "WHERE sensor LIKE 'm%' ORDER BY sensor;",
        columns=["unique_id", "ds", "y"],
    )
    assert table.schema.field("ds").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("y").type == pa.float64()
    assert table.schema.field("n").type == pa.int64()
    assert table.schema.field("ok").type == pa.bool_()
    rows = table.to_pylist()
    # The instant is kept whatever zone it was written in.
    assert rows[0]["ds"] == rows[1]["ds"] == datetime(2024, 1, 1, 0, 0, tzinfo=UTC)
    assert rows[0]["y"] == 1.25 and rows[1]["y"] is None and rows[2]["y"] != rows[2]["y"]
    # NULL and the empty string stay different, and text keeps its commas, quotes, newlines.
    assert rows[0]["note"] == 'a,"b"\nc' and rows[1]["note"] == "" and rows[2]["note"] is None
    assert rows[2]["ds"] is None and rows[2]["ok"] is None


def test_a_time_arrow_cannot_hold_stays_text_for_the_row_checks(
    pg: PostgresServer, table_name: str
) -> None:
    """One ``infinity`` must not fail the whole read: the row checks quarantine that row."""
    with pg.connect() as con:
        con.execute(f'CREATE TABLE "{table_name}" (ds timestamptz, y float8)')
        con.execute(f"INSERT INTO \"{table_name}\" VALUES ('2024-01-01', 1), ('infinity', 2)")
    table = read_query(pg.dsn, f'SELECT * FROM "{table_name}"')
    assert table.column("ds").to_pylist() == ["2024-01-01 00:00:00+00", "infinity"]
    assert table.schema.field("y").type == pa.float64()


def test_an_empty_result_keeps_its_columns(pg: PostgresServer) -> None:
    table = read_query(
        pg.dsn, "SELECT 'a'::text AS unique_id, now() AS ds, 1.0::float8 AS y LIMIT 0"
    )
    assert table.num_rows == 0
    assert table.column_names == ["unique_id", "ds", "y"]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        (
            "SELECT * FROM no_such_table",
            r'the query failed: relation "no_such_table" does not exist',
        ),
        (
            "SELECT 1 AS sensor",
            r"returns no column\(s\) 'unique_id', 'ds', 'y' \(columns: 'sensor'\)",
        ),
        ("SELECT 1 AS y, 2 AS y", r"returns column\(s\) 'y' more than once"),
        ("  ;", r"\[source\] query is empty"),
    ],
)
def test_a_bad_query_names_the_database_and_the_problem(
    pg: PostgresServer, query: str, problem: str
) -> None:
    where = pg.dsn.replace(":", r"\:").replace(".", r"\.")
    with pytest.raises(InputFileError, match=rf"^{where}: .*{problem}"):
        read_query(pg.dsn, query, columns=["unique_id", "ds", "y"])


def test_a_source_query_cannot_write(pg: PostgresServer, table_name: str) -> None:
    with pg.connect() as con:
        con.execute(f'CREATE SEQUENCE "{table_name}"')
    with pytest.raises(
        InputFileError, match=r"cannot execute nextval.* in a read-only transaction"
    ):
        read_query(pg.dsn, f"SELECT nextval('\"{table_name}\"') AS y")
    with pg.connect() as con:
        assert con.execute(f'SELECT last_value, is_called FROM "{table_name}"').fetchone() == (
            1,
            False,
        )
        con.execute(f'DROP SEQUENCE "{table_name}"')


def test_connection_failures_say_what_to_check_and_never_the_password(
    pg: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    host_port = pg.dsn.split("@")[1].split("/")[0]
    with pytest.raises(InputFileError, match=r'database "nowhere" does not exist') as missing:
        read_query(pg.dsn.rsplit("/", 1)[0] + "/nowhere", "SELECT 1")
    monkeypatch.setenv("PGPASSWORD", "not-the-password")
    with pytest.raises(InputFileError, match="password authentication failed") as refused:
        read_query(pg.dsn, "SELECT 1")
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    with pytest.raises(InputFileError, match=r"no password supplied.*PGPASSWORD or ~/\.pgpass"):
        read_query(pg.dsn, "SELECT 1")
    closed = pg.dsn.replace(host_port, "127.0.0.1:1")
    with pytest.raises(
        InputFileError, match=r"^postgresql://steadycast@127\.0\.0\.1:1/forecasts: cannot connect"
    ):
        read_query(closed, "SELECT 1")
    for exc in (missing.value, refused.value):
        assert pg.password not in str(exc) and "not-the-password" not in str(exc)


def test_a_sink_that_cannot_connect_says_what_to_check(pg: PostgresServer) -> None:
    host_port = pg.dsn.split("@")[1].split("/")[0]
    down = pg.dsn.replace(host_port, "127.0.0.1:1")
    sink = open_sink(PostgresSinkConfig(kind="postgresql", database=down, table="forecasts"))
    with pytest.raises(SinkError, match=r"cannot connect.*server is up.*PGPASSWORD") as failed:
        sink.write(_release("r1", 10))
    assert "127.0.0.1:1" in str(failed.value) and pg.password not in str(failed.value)


def test_a_password_in_the_url_is_refused_without_being_shown(pg: PostgresServer) -> None:
    with_password = pg.dsn.replace("steadycast@", f"steadycast:{pg.password}@")
    with pytest.raises(ConfigError, match=r"holds a password.*PGPASSWORD or ~/\.pgpass") as refused:
        read_query(with_password, "SELECT 1")
    assert pg.password not in str(refused.value)
    as_option = f"{pg.dsn}?sslmode=disable&password={pg.password}"
    with pytest.raises(ConfigError, match="holds a password") as refused:
        read_query(as_option, "SELECT 1")
    assert pg.password not in str(refused.value)
    with pytest.raises(ValidationError, match="holds a password"):
        PostgresSinkConfig(kind="postgresql", database=with_password, table="t")


# --- the sink -----------------------------------------------------------------------------------


def _sink(pg: PostgresServer, table: str):  # type: ignore[no-untyped-def]
    return open_sink(PostgresSinkConfig(kind="postgresql", database=pg.dsn, table=table))


def test_the_sink_creates_the_table_with_the_release_in_every_row(
    pg: PostgresServer, table_name: str
) -> None:
    sink = _sink(pg, table_name)
    assert pg.password not in sink.label and table_name in sink.label
    sink.write(_release("r1", 240))
    with pg.connect() as con:
        columns = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = %s ORDER BY ordinal_position",
            (table_name,),
        ).fetchall()
        first = con.execute(
            f'SELECT unique_id, ds, yhat, model, release_id, run_id, yhat_lo_80 FROM "{table_name}" '
            "ORDER BY ds LIMIT 1"
        ).fetchone()
    assert dict(columns) == {
        "unique_id": "text",
        "ds": "timestamp with time zone",
        "yhat": "double precision",
        "model": "text",
        "release_id": "text",
        "run_id": "text",
        "published_at": "timestamp with time zone",
        "yhat_lo_80": "double precision",
        "yhat_hi_80": "double precision",
        "yhat_lo_95": "double precision",
        "yhat_hi_95": "double precision",
    }
    # A release's naive times are UTC instants.
    assert first == (
        "s000",
        datetime(2024, 3, 31, tzinfo=UTC),
        0.0,
        "SeasonalNaive",
        "r1",
        "run-r1",
        -1.0,
    )
    assert _held(pg, table_name) == [("r1", 240)]


def test_writing_the_same_release_again_changes_nothing(
    pg: PostgresServer, table_name: str
) -> None:
    sink = _sink(pg, table_name)
    sink.write(_release("r1", 100))
    with pg.connect() as con:
        before = con.execute(
            f'SELECT xmin::text, published_at FROM "{table_name}" LIMIT 1'
        ).fetchone()
    sink.write(_release("r1", 100))
    with pg.connect() as con:
        after = con.execute(
            f'SELECT xmin::text, published_at FROM "{table_name}" LIMIT 1'
        ).fetchone()
    assert after == before  # not rewritten: the same row versions
    sink.write(_release("r2", 60, levels=(50, 80, 95)))  # a new level adds its columns
    assert _held(pg, table_name) == [("r2", 60)]
    with pg.connect() as con:
        lo50 = con.execute(f'SELECT count(yhat_lo_50) FROM "{table_name}"').fetchone()
    assert lo50 == (60,)


def test_readers_see_one_whole_release_while_releases_are_swapped(
    pg: PostgresServer, table_name: str
) -> None:
    """A dashboard counting rows per release during many swaps never sees two releases, an
    empty table or a partial one."""
    sink = _sink(pg, table_name)
    sizes = {f"r{i}": 5_000 + 1_000 * (i % 3) for i in range(12)}
    sink.write(_release("r0", sizes["r0"]))
    seen: list[list[tuple[str, int]]] = []
    stop = threading.Event()

    def read() -> None:
        with pg.connect() as con:
            while not stop.is_set():
                seen.append(
                    con.execute(
                        f'SELECT release_id, count(*) FROM "{table_name}" GROUP BY release_id'
                    ).fetchall()
                )

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for release_id, size in list(sizes.items())[1:]:
            sink.write(_release(release_id, size))
    finally:
        stop.set()
        reader.join(timeout=60)
    assert len(seen) > 20, "the reader hardly ran; the test proves nothing"
    bad = [s for s in seen if len(s) != 1 or s[0][1] != sizes[s[0][0]]]
    assert not bad, f"readers saw a mix, an empty or a partial release: {bad[:3]}"
    assert len({s[0][0] for s in seen}) > 3, "the reader saw too few swaps"


def test_a_load_that_fails_leaves_the_previous_release_whole(
    pg: PostgresServer, table_name: str
) -> None:
    sink = _sink(pg, table_name)
    sink.write(_release("r1", 3_000))
    broken = _release("r2", 3_000)
    ids = broken.rows.column("unique_id").to_pylist()
    ids[-1] = None  # the last row breaks NOT NULL, after every other row was copied
    broken = ReleaseRows(
        broken.pipeline,
        broken.release_id,
        broken.run_id,
        broken.rows.set_column(0, "unique_id", pa.array(ids, pa.string())),
    )
    with pytest.raises(
        SinkError, match=rf"{table_name}.*\"unique_id\".*still holds the previous release"
    ):
        sink.write(broken)
    assert _held(pg, table_name) == [("r1", 3_000)]
    sink.write(_release("r3", 10))  # the next delivery goes through
    assert _held(pg, table_name) == [("r3", 10)]


def test_a_connection_killed_mid_load_leaves_the_previous_release_whole(
    pg: PostgresServer, table_name: str
) -> None:
    sink = _sink(pg, table_name)
    sink.write(_release("r1", 2_000))
    killed: list[int] = []

    def kill_the_copy() -> None:
        with pg.connect() as con:
            deadline = time.monotonic() + 60
            while not killed and time.monotonic() < deadline:
                for (pid,) in con.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'steadycast' "
                    "AND state = 'active' AND query LIKE 'COPY%%'"
                ).fetchall():
                    time.sleep(0.05)  # into the load, not at its start
                    con.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    killed.append(pid)
                time.sleep(0.005)

    killer = threading.Thread(target=kill_the_copy)
    killer.start()
    try:
        with pytest.raises(SinkError, match="still holds the previous release"):
            sink.write(_release("r2", 600_000))
    finally:
        killer.join(timeout=90)
    assert killed, "the load finished before it could be killed; the test proves nothing"
    assert _held(pg, table_name) == [("r1", 2_000)]


def test_the_sink_itself_refuses_a_table_name_it_would_have_to_quote(pg: PostgresServer) -> None:
    """The config refuses it first (below); a config built in code without validation too."""
    cfg = PostgresSinkConfig.model_construct(
        kind="postgresql", database=pg.dsn, table="forecasts; DROP TABLE x"
    )
    with pytest.raises(ConfigError, match=r"table = 'forecasts; DROP TABLE x'"):
        open_sink(cfg)


# --- end to end: the command a user runs -------------------------------------------------------


def test_a_query_source_and_a_table_sink_through_the_cli(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """``steadycast ingest NAME`` runs the configured query; ``steadycast run NAME`` publishes
    and the table holds the release; the password is nowhere in what steadycast wrote."""
    pg = postgres_server
    with pg.connect() as con:
        con.execute("DROP TABLE IF EXISTS readings; DROP TABLE IF EXISTS public.meter_forecasts")
        con.execute(
            "CREATE TABLE readings AS SELECT 'm' || s AS meter, "
            "timestamptz '2024-01-01 00:00+00' + h * interval '1 hour' AS read_at, "
            "(10 + s + 5 * sin(h * pi() / 12))::numeric(10, 3) AS kwh "
            "FROM generate_series(1, 3) s, generate_series(0, 24 * 14 - 1) h"
        )
    ws = Workspace.init(tmp_path / "ws")
    text = pipeline_toml(
        id_column="meter",
        time_column="read_at",
        value_column="kwh",
        horizon=24,
        models=("Naive", "SeasonalNaive"),
        extra=f'[[sinks]]\nkind = "postgresql"\ndatabase = "{pg.dsn}"\ntable = "meter_forecasts"\n',
    )
    source = f'query = "SELECT meter, read_at, kwh FROM readings"\ndatabase = "{pg.dsn}"\n'
    (ws.pipelines_dir / "meters.toml").write_text(
        text.replace("[source]\n", "[source]\n" + source, 1), encoding="utf-8"
    )
    env = dict(pg.env)
    ingest = run_cli("ingest", "meters", "-w", str(ws.root), env=env)
    assert ingest.returncode == 0, ingest.stderr
    run = run_cli("run", "meters", "-w", str(ws.root), env=env)
    assert run.returncode == 0, run.stdout + run.stderr

    with pg.connect() as con:
        held = con.execute(
            "SELECT release_id, count(*), count(DISTINCT unique_id) FROM meter_forecasts "
            "GROUP BY release_id"
        ).fetchall()
    assert held == [(releases.current_id(ws.releases_dir, "meters"), 3 * 24, 3)]

    secret = pg.password.encode()
    for done in (ingest, run):
        assert pg.password not in done.stdout + done.stderr
    leaked = [p for p in ws.root.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert not leaked, f"the password was written to {leaked}"
    # Databases may compress text, so their rows are read back too: the ledger, the run
    # records and the audit log among them.
    rows = _every_row(ws)
    assert any("postgresql://" in r for r in rows), "the source is not in the records at all"
    assert not [r for r in rows if pg.password in r]


def _every_row(ws: Workspace) -> list[str]:
    """Every row of every table of the workspace's store and control databases, as text."""
    import contextlib
    import sqlite3

    out = []
    with store.reading(ws.store_path) as con:
        names = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
        ).fetchall()
        for (name,) in names:
            out += [str(r) for r in con.execute(f'SELECT * FROM "{name}"').fetchall()]
    with contextlib.closing(sqlite3.connect(ws.control_path)) as con:
        names = con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        for (name,) in names:
            out += [str(r) for r in con.execute(f'SELECT * FROM "{name}"').fetchall()]
    return out


def test_validate_refuses_a_sink_password_or_table_name_without_echoing_it(
    tmp_path: Path,
) -> None:
    ws = Workspace.init(tmp_path / "ws")
    sink = (
        '[[sinks]]\nkind = "postgresql"\n'
        'database = "postgresql://loader:hunter2pw@db:5432/analytics"\ntable = "daily forecasts"\n'
    )
    (ws.pipelines_dir / "meters.toml").write_text(pipeline_toml(extra=sink), encoding="utf-8")
    done = run_cli("validate", "-w", str(ws.root))
    assert done.returncode == 2
    out = done.stdout + done.stderr
    assert (
        "sinks.0.postgresql.database: 'postgresql://loader@db:5432/analytics': the URL holds a password"
        in out
    )
    assert "'daily forecasts' is not a table name" in out
    assert "hunter2pw" not in out
