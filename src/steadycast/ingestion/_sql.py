"""SQL text helpers shared by the ingest statements: quoting, one-number queries, short errors."""

from __future__ import annotations

from typing import Any

import duckdb


def ident(name: str) -> str:
    """Quote a column name that was checked to exist in the file."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal (for text DuckDB cannot take as a parameter: table functions, DDL)."""
    return "'" + text.replace("'", "''") + "'"


def count(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> int:
    """The one integer a query returns (0 for no row or NULL).

    The result is read to its end: DuckDB refuses other work on a connection (registering a
    frame) while a result is unfinished.
    """
    rows = con.execute(sql, params or []).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def first_line(exc: Exception) -> str:
    """The first line of an error, for a message that names the file (DuckDB's run long)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
