"""Writing the quarantine of a batch: every bad row with its line, reason, sentence and text.

Two kinds of bad rows: lines DuckDB could not read as a row (``malformed_row``, or
``line_too_long`` for a line replaced by a stand-in), and rows of ``checked`` with a reason code.
A row's line number counts the header and the rejected lines before it.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from steadycast.ingestion._ledger import BatchKey
from steadycast.ingestion._read import MAX_LINE_BYTES, SHOWN_BYTES, LongLine
from steadycast.ingestion._reasons import REASONS, duplicate_sentence_sql
from steadycast.ingestion._sql import count, literal


def line_numbers(con: duckdb.DuckDBPyConnection, r: str, header: int, has_rejects: bool) -> str:
    """SQL of a row's line in the file (``r``: its row index among the rows read).

    With rejected lines, creates ``rej`` (one row per rejected line, with the row index from
    which it shifts the line numbers).
    """
    if not has_rejects:
        return f"{r} + 1 + {header}"
    # Line numbers of rows after a rejected line shift by the rejected lines before them.
    con.execute("""
        CREATE TEMP TABLE rej AS
        SELECT line, line - 2 - (row_number() OVER (ORDER BY line) - 1) AS threshold,
               error_message, csv_line
        -- DuckDB may report several errors for one line; the line is one quarantined row.
        -- Its text starts with the blank lines before it: the line is what follows them.
        FROM (SELECT line, min(error_message) AS error_message,
                     ltrim(any_value(csv_line), chr(13) || chr(10)) AS csv_line
              FROM rejects GROUP BY line)
    """)
    return f"{r} + 1 + {header} + (SELECT count(*) FROM rej WHERE rej.threshold <= {r})"


def quarantine_rejected(
    con: duckdb.DuckDBPyConnection,
    key: BatchKey,
    long_lines: list[LongLine],
) -> None:
    """Quarantine the lines DuckDB rejected (``rej``); a stand-in for a line too long is
    quarantined as that line."""
    reason, detail_text, raw_text, long_join = "'malformed_row'", "error_message", "csv_line", ""
    if long_lines:
        # A line too long was read as a short stand-in; it is quarantined as what it was.
        shown = pd.DataFrame(
            {
                "line": [x.line for x in long_lines],
                "detail": [
                    f"the line is {x.size:,} bytes long, more than the {MAX_LINE_BYTES:,} a "
                    f"line may have; raw holds its first {SHOWN_BYTES} bytes"
                    for x in long_lines
                ],
                "raw": [x.shown for x in long_lines],
            }
        )
        con.register("long_lines_df", shown)
        long_join = "LEFT JOIN long_lines_df l USING (line)"
        reason = "CASE WHEN l.line IS NULL THEN 'malformed_row' ELSE 'line_too_long' END"
        detail_text, raw_text = "coalesce(l.detail, error_message)", "coalesce(l.raw, csv_line)"
    con.execute(
        f"INSERT INTO quarantine SELECT ?, ?, ?, line, {reason}, {detail_text}, NULL, "
        f"{raw_text} FROM rej {long_join}",
        list(key),
    )


def quarantine_checked(
    con: duckdb.DuckDBPyConnection,
    key: BatchKey,
    *,
    r: str,
    line: str,
    exact: pd.DataFrame | None,
) -> None:
    """Quarantine the rows of ``checked c`` with a reason code; ``r`` and ``line`` are the SQL
    of a row's index and line, ``exact`` the text the file holds for the rows it names
    (``rec``, ``line``, ``raw``)."""
    names = "[" + ", ".join(literal(x) for x in REASONS) + "]"
    dupes, t_text, v_text, detail = "", "c.bad[1]", "c.bad[2]", "c.bad[3]"
    if count(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'dupes'"):
        # A duplicate is shown by its key; the sentence says what kind of copy it is.
        dupes = "LEFT JOIN dupes d ON d.unique_id = c.unique_id AND d.ds = c.ds"
        t_text = "coalesce(c.bad[1], strftime(c.ds, '%Y-%m-%d %H:%M:%S'))"
        v_text = "coalesce(c.bad[2], CAST(c.y AS VARCHAR))"
        detail = duplicate_sentence_sql()
    raw = (
        f"concat_ws(',', coalesce(c.unique_id, ''), coalesce({t_text}, ''), coalesce({v_text}, ''))"
    )
    join = ""
    if exact is not None:
        # The line as it is in the file, so a person grepping for it finds it.
        con.register("exact_lines_df", exact)
        join = f"LEFT JOIN exact_lines_df x ON x.rec = {r}"
        line, raw = f"coalesce(x.line, {line})", f"coalesce(x.raw, {raw})"
    con.execute(
        f"INSERT INTO quarantine SELECT ?, ?, ?, {line}, {names}[c.code], {detail}, c.unique_id, "
        f"{raw} FROM checked c {dupes} {join} WHERE c.code IS NOT NULL",
        list(key),
    )
