"""A SQL query against PostgreSQL as a source: ``[source] query`` run on ``[source] database``.

The rows come back as an Arrow table, which is then ingested like any frame (frame.py): the same
checks, quarantine and ledger as a file. They are fetched with one ``COPY (query) TO STDOUT``
in CSV, parsed by Arrow's multi-threaded CSV reader with column types taken from the query's
result description, so no row passes through Python objects (a psycopg cursor into Arrow took
1.4 to 1.6x as long on a million rows, holding every row as Python objects; bench/ingest.py).
The query runs in a read-only transaction: a source never writes.

Every failure (the server unreachable, a refused password, bad SQL, a column the pipeline maps
but the query does not return) is an ``InputFileError`` naming the database as
``postgresql://user@host:port/db`` and the problem; the password, which libpq takes from
``PGPASSWORD`` or ``~/.pgpass``, is never part of it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.csv as pacsv

from steadycast._pg import PgError, connect, label, problem
from steadycast.errors import InputFileError

# PostgreSQL result types and the Arrow type each is read as; any other type is read as text.
_ARROW_TYPES: dict[str, pa.DataType] = {
    "int2": pa.int64(),
    "int4": pa.int64(),
    "int8": pa.int64(),
    "oid": pa.int64(),
    "float4": pa.float64(),
    "float8": pa.float64(),
    "numeric": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}


def read_query(database: str, query: str, *, columns: Sequence[str] = ()) -> pa.Table:
    """The rows ``query`` returns on ``database``, as an Arrow table; ``columns`` are the ones
    the pipeline maps (id, time, value), named in the error when the query lacks one."""
    where = label(database)
    body = query.strip().rstrip(";").rstrip()
    if not body:
        raise InputFileError(where, "[source] query is empty; write a SELECT returning the rows")
    try:
        con = connect(database, "[source] database")
    except PgError as exc:
        raise InputFileError(
            where,
            f"{exc}; check the host, port, database and user, and that PGPASSWORD or "
            "~/.pgpass holds the password",
        ) from None
    import psycopg
    from psycopg.postgres import types as pg_types

    with con:
        con.read_only = True
        try:
            with con.cursor() as cur:
                # Described without being run, so the columns can be checked before any row moves.
                cur.execute(f"SELECT * FROM ({body}) AS steadycast_source LIMIT 0")
                described = cur.description or []
                names = [d.name for d in described]
                kinds = [getattr(pg_types.get(d.type_code), "name", "text") for d in described]
                _check_columns(where, names, columns)
                data = io.BytesIO()
                with cur.copy(f"COPY ({body}) TO STDOUT (FORMAT csv)") as copy:
                    for chunk in copy:
                        data.write(chunk)
        except psycopg.Error as exc:
            raise InputFileError(
                where, f"the query failed: {problem(exc)}; fix [source] query"
            ) from None
    return _parse(data.getvalue(), names, kinds)


def _check_columns(where: str, names: list[str], wanted: Sequence[str]) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputFileError(
            where,
            f"the query returns column(s) {', '.join(repr(n) for n in twice)} more than once; "
            "give each an alias (... AS name) in [source] query",
        )
    missing = [c for c in wanted if c not in names]
    if missing:
        shown = ", ".join(repr(n) for n in names[:20])
        raise InputFileError(
            where,
            f"the query returns no column(s) {', '.join(repr(c) for c in missing)} (columns: "
            f"{shown}); alias them in [source] query (for example SELECT sensor AS unique_id) "
            "or map them with id_column, time_column and value_column in [source]",
        )


def _parse(data: bytes, names: list[str], kinds: list[str]) -> pa.Table:
    """COPY's CSV as Arrow: an unquoted empty field is NULL, a quoted one an empty string, as
    PostgreSQL writes them. A value Arrow cannot read in the described type (a timestamp
    beyond year 9999, ``infinity``) leaves that column as text, for the row checks to
    quarantine row by row instead of failing the whole batch."""
    typed = {n: _ARROW_TYPES.get(k, pa.string()) for n, k in zip(names, kinds, strict=True)}
    if not data:
        return pa.schema(list(typed.items())).empty_table()
    for _ in names:
        try:
            return _read_csv(data, names, typed)
        except pa.ArrowInvalid as exc:
            failed = re.search(r"CSV column #(\d+)", str(exc))
            if failed is None or typed[names[int(failed.group(1))]] == pa.string():
                raise
            typed[names[int(failed.group(1))]] = pa.string()
    return _read_csv(data, names, typed)


def _read_csv(data: bytes, names: list[str], types: dict[str, pa.DataType]) -> pa.Table:
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names, block_size=16 << 20),
        # COPY quotes only values that need it, so without a quote there is no newline inside a
        # value, and Arrow can split the text into blocks for both cores.
        parse_options=pacsv.ParseOptions(newlines_in_values=b'"' in data),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )
