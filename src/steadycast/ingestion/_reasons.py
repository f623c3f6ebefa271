"""Row reasons: their codes, the test that gives each row its first reason, and the sentences.

Every row of a batch lands in one narrow table, ``checked``: a good row is its id, time and
value; a bad row also carries a small reason code and what to show a person (the time and
value as text, and a sentence naming what is wrong). The quarantine is written from it.
"""

from __future__ import annotations

import duckdb

from steadycast.config import PipelineConfig
from steadycast.ingestion._sql import literal
from steadycast.ingestion.timegrid import TIME_RANGE, in_range_sql

# Reason codes, in the order they are tested: a row gets the first that applies.
REASONS = (
    "line_too_long",
    "malformed_row",
    "missing_id",
    "unparseable_time",
    "time_out_of_range",
    "nonexistent_local_time",
    "ambiguous_local_time",
    "misaligned",
    "missing_value",
    "not_a_number",
    "non_finite",
    "below_min",
    "above_max",
    "conflicting_duplicate",
    "duplicate",
)


def code(reason: str) -> int:
    """A reason's small code in ``checked`` (its 1-based position in REASONS)."""
    return REASONS.index(reason) + 1


def create_checked(
    con: duckdb.DuckDBPyConnection,
    cfg: PipelineConfig,
    *,
    rows: str,
    rec: str,
    ds: str,
    dst_reasons: str,
    on_grid: str,
    amb_cnt: str,
) -> None:
    """``checked``: every row with its ``ds`` and, when bad, its reason code and what to show.

    The table holds the whole batch, so it is kept narrow: a good row is its id, time, value
    and two NULLs; only a bad row carries text (``bad``: time text, value text, sentence).
    """
    con.execute(f"""
        CREATE TEMP TABLE checked AS
        SELECT {"rec, " if rec else ""}unique_id, y, ds, CAST(code AS UTINYINT) AS code,
               CASE WHEN code IS NOT NULL THEN [t_text, coalesce(v_raw, CAST(y AS VARCHAR)),
               {_sentence_sql(cfg)}] END AS bad
        FROM (
        SELECT *,
               CASE WHEN code IS NOT NULL THEN coalesce(t_raw, strftime(t_parsed, '%Y-%m-%d %H:%M:%S')) END AS t_text
        FROM (
            SELECT {rec} s.unique_id, s.t_raw, s.v_raw, s.y, {amb_cnt} AS amb_cnt,
                   coalesce(s.ts_local, s.ts_utc) AS t_parsed,
                   {ds} AS ds,
                   {_code_sql(cfg, dst_reasons, on_grid)} AS code
            FROM {rows}
        )
        )
    """)


def _code_sql(cfg: PipelineConfig, dst_reasons: str, on_grid: str) -> str:
    """A row's reason code over the parsed row ``s``: the first reason that applies, in the
    order of REASONS (NULL for a good row)."""
    lo, hi, c = cfg.series.min_value, cfg.series.max_value, code
    min_check = f"WHEN s.y < {float(lo)!r} THEN {c('below_min')}" if lo is not None else ""
    max_check = f"WHEN s.y > {float(hi)!r} THEN {c('above_max')}" if hi is not None else ""
    grid_check = (
        "" if cfg.ingest.snap_to_frequency else f"WHEN NOT ({on_grid}) THEN {c('misaligned')}"
    )
    return f"""CASE
                     WHEN s.unique_id IS NULL THEN {c("missing_id")}
                     WHEN s.ts_local IS NULL AND s.ts_utc IS NULL THEN {c("unparseable_time")}
                     WHEN NOT {in_range_sql("coalesce(s.ts_local, s.ts_utc)")} THEN {c("time_out_of_range")}
                     {dst_reasons}
                     {grid_check}
                     WHEN s.y IS NULL AND (s.v_raw IS NULL OR trim(s.v_raw) = '') THEN {c("missing_value")}
                     WHEN s.y IS NULL THEN {c("not_a_number")}
                     WHEN isnan(s.y) OR isinf(s.y) THEN {c("non_finite")}
                     {min_check}
                     {max_check}
                   END"""


def _sentence_sql(cfg: PipelineConfig) -> str:
    """The sentence of a row's reason (all but duplicates, which are found later): it names the
    text that is wrong and, where there is one, the setting it broke."""
    lo, hi, c = cfg.series.min_value, cfg.series.max_value, code
    freq = literal(cfg.series.frequency)
    zone = literal(cfg.source.timezone)
    return f"""CASE code
                 WHEN {c("missing_id")} THEN 'the id column is empty'
                 WHEN {c("unparseable_time")} THEN 'cannot read ' || coalesce('''' || t_raw || '''', 'an empty value') || ' as a time'
                 WHEN {c("time_out_of_range")} THEN 'time ' || t_text || ' is outside the times a pipeline accepts ({TIME_RANGE})'
                 WHEN {c("nonexistent_local_time")} THEN 'local time ' || t_text || ' does not exist in ' || {zone} || ' (daylight-saving change)'
                 WHEN {c("ambiguous_local_time")} THEN 'local time ' || t_text || ' occurs twice in ' || {zone} || ' and this series reports it ' || amb_cnt || ' time(s)'
                 WHEN {c("misaligned")} THEN 'time ' || t_text || ' is not on the ' || {freq} || ' grid'
                 WHEN {c("missing_value")} THEN 'the value is empty'
                 WHEN {c("not_a_number")} THEN 'value ''' || v_raw || ''' is not a number'
                 WHEN {c("non_finite")} THEN 'value ' || CAST(y AS VARCHAR) || ' is not finite'
                 WHEN {c("below_min")} THEN 'value ' || CAST(y AS VARCHAR) || ' is below min_value {lo}'
                 WHEN {c("above_max")} THEN 'value ' || CAST(y AS VARCHAR) || ' is above max_value {hi}'
               END"""


def duplicate_sentence_sql() -> str:
    """The sentence of a duplicate, from ``dupes d`` (the key and how many rows share it), or
    the sentence ``checked c`` holds for any other reason."""
    return f"""coalesce(c.bad[3], CASE c.code
            WHEN {code("conflicting_duplicate")} THEN d.n || ' rows for series ''' || d.unique_id
                 || ''' at ' || strftime(d.ds, '%Y-%m-%dT%H:%M:%S') || ' with different values'
            WHEN {code("duplicate")} THEN 'exact copy of an earlier row for the same series and time'
            END)"""
