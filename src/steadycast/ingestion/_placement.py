"""Time placement: which parser reads the time column, and where each row lands on the grid.

The parser is chosen from a sample (ISO 8601 first, then the usual day-first and month-first
layouts); a time with a UTC offset is an instant, a time without one is wall-clock time in the
pipeline's zone. UTC pipelines and calendar frequencies are placed by arithmetic in the pass that
parses; other zones go through a map of the distinct local times (``timegrid.grid_map``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb
import pandas as pd
from pandas.tseries.offsets import Tick

from steadycast.config import PipelineConfig
from steadycast.errors import ParityError
from steadycast.ingestion._reasons import code, create_checked
from steadycast.ingestion._sql import count, literal
from steadycast.ingestion.timegrid import grid_map, in_range_sql, is_calendar, offset_of

# Formats tried, on a sample, when [source].time_format is empty and ISO 8601 does not fit.
CANDIDATE_FORMATS = (
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%Y%m%d%H%M%S",
    "%Y%m%d",
)

# Exact ISO 8601 wall-clock layouts: a sample picks the strict parser most rows fit.
ISO_STRICT = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f",
)

# A time of day followed by a UTC offset: the timestamp is an instant, not a wall-clock time.
AWARE = r"\d:\d\d(:\d\d([.,]\d+)?)?\s*([Zz]|[+-]\d\d(:?\d\d)?)\s*$"
EPOCH = r"^\s*-?\d{9,14}([.]\d+)?\s*$"


@dataclass(frozen=True)
class TimeParser:
    """How the time column is read: ``strict`` accepts only the whole text in one exact format
    (so it can never drop a UTC offset); rows it refuses go through ``lenient`` after the
    offset test. Both are SQL expressions over ``t``."""

    strict: str
    lenient: str
    name: str


def _strptime(fmt: str) -> str:
    return f"try_strptime(t, {literal(fmt)})"


def choose_format(con: duckdb.DuckDBPyConnection, source: str, cfg: PipelineConfig) -> TimeParser:
    """Pick the time parsers from a sample of the file."""
    explicit = cfg.source.time_format
    if explicit:
        return TimeParser(_strptime(explicit), _strptime(explicit), explicit)
    con.execute(
        f"CREATE TEMP TABLE sample AS SELECT t FROM (SELECT t_raw AS t FROM {source} LIMIT 5000) "
        f"WHERE t IS NOT NULL AND NOT regexp_matches(t, {literal(AWARE)}) "
        f"AND NOT regexp_matches(t, {literal(EPOCH)})"
    )

    def fitting(expr: str) -> int:
        return count(con, f"SELECT count({expr}) FROM sample")

    total = count(con, "SELECT count(*) FROM sample")
    strict_count, strict = max((fitting(_strptime(f)), _strptime(f)) for f in ISO_STRICT)
    best = TimeParser(
        strict if strict_count else "NULL::TIMESTAMP", "TRY_CAST(t AS TIMESTAMP)", "ISO 8601"
    )
    best_count = fitting(best.lenient)
    if best_count < total:
        for fmt in CANDIDATE_FORMATS:
            fits = fitting(_strptime(fmt))
            if fits > best_count:
                best, best_count = TimeParser(_strptime(fmt), _strptime(fmt), fmt), fits
    con.execute("DROP TABLE sample")
    return best


def staged_sql(source: str, cfg: PipelineConfig, parser: TimeParser) -> str:
    """SELECT that parses every row: id, value, wall-clock or UTC time, unparsed text.

    Most rows are read by the strict parser and tested for nothing else. Of the rest, a cheap
    string test finds the few that may carry a UTC offset; only those pay for the regular
    expression, and only rows that are not wall-clock times are tried as epoch numbers.
    """
    strict = parser.strict
    if re.search(r"%[zZ]", cfg.source.time_format):
        strict = naive = "NULL::TIMESTAMP"
        aware = f"timezone('UTC', try_strptime(t, {literal(cfg.source.time_format)}))"
        maybe_aware = "true"
    else:
        naive = parser.lenient
        aware = "timezone('UTC', TRY_CAST(t AS TIMESTAMPTZ))"
        # CASE evaluates lazily, so only rows that pass the cheap test pay for the regex.
        maybe_aware = (
            "CASE WHEN suffix(t, 'Z') OR suffix(t, 'z') OR contains(substr(t, 12), '+') "
            f"OR contains(substr(t, 14), '-') THEN regexp_matches(t, {literal(AWARE)}) END"
        )
    epoch = (
        f"CASE WHEN regexp_matches(t, {literal(EPOCH)}) THEN "
        "CASE WHEN length(split_part(ltrim(trim(t), '-'), '.', 1)) <= 11 "
        "THEN timezone('UTC', to_timestamp(TRY_CAST(t AS DOUBLE))) "
        "ELSE timezone('UTC', to_timestamp(TRY_CAST(t AS DOUBLE) / 1000.0)) END END"
    )
    # The original text is kept only where it did not parse; good rows keep typed values only.
    return f"""
        SELECT unique_id, y, ts_local, ts_utc,
               CASE WHEN ts_local IS NULL AND ts_utc IS NULL THEN t END AS t_raw,
               CASE WHEN y IS NULL THEN v_raw END AS v_raw
        FROM (
        SELECT unique_id, t, v_raw, y, ts_local,
               CASE WHEN is_aware THEN {aware} WHEN ts_local IS NULL THEN {epoch} END AS ts_utc
        FROM (
            SELECT unique_id, t, v_raw, y, is_aware,
                   CASE WHEN strict IS NOT NULL THEN strict WHEN NOT is_aware THEN {naive} END
                     AS ts_local
            FROM (
            SELECT unique_id, t, v_raw, y, strict,
                   CASE WHEN strict IS NULL THEN coalesce({maybe_aware}, false) ELSE false END
                     AS is_aware
            FROM (
                SELECT NULLIF(trim(id_raw), '') AS unique_id, t_raw AS t, v_raw,
                       TRY_CAST(v_raw AS DOUBLE) AS y, {strict} AS strict
                FROM {source}
            )
            )
        )
        )
    """


def needs_grid_map(cfg: PipelineConfig) -> bool:
    """Whether placing times needs the zone's rules (a map of distinct local times).

    Not for a UTC pipeline or a calendar frequency on a fixed grid: there the time is placed by
    arithmetic in the same pass that parses it, so the file is read and written once.
    """
    if not isinstance(offset_of(cfg.series.frequency), Tick):
        return True
    return not (cfg.source.timezone in ("UTC", "Etc/UTC") or is_calendar(cfg.series.frequency))


def place(con: duckdb.DuckDBPyConnection, cfg: PipelineConfig) -> str:
    """Place parsed rows through the zone's grid map (DST rules); returns the row-number
    expression of ``checked``."""
    tz = literal(cfg.source.timezone)
    local = f"coalesce(ts_local, timezone({tz}, timezone('UTC', ts_utc)))"
    # Times out of range never reach pandas (they are quarantined, and pandas cannot hold them).
    locals_ = con.execute(
        f"SELECT DISTINCT {local} AS local FROM staged "
        f"WHERE {in_range_sql('coalesce(ts_local, ts_utc)')}"
    ).fetchdf()["local"]
    gm = grid_map(locals_, cfg.series.frequency, cfg.source.timezone, cfg.ingest.snap_to_frequency)
    con.register("grid_df", gm)
    con.execute("CREATE TEMP TABLE grid AS SELECT * FROM grid_df")
    con.unregister("grid_df")
    calendar = is_calendar(cfg.series.frequency)
    snap = cfg.ingest.snap_to_frequency
    aware_ds = (
        "g.local_snapped"
        if calendar
        else ("s.ts_utc - (g.ts_local - g.local_snapped)" if snap else "s.ts_utc")
    )
    base = count(con, "SELECT min(rowid) FROM staged")
    con.execute(f"""
        CREATE TEMP TABLE ambiguous AS
        SELECT s.rowid - {base} AS rec,
               row_number() OVER (PARTITION BY s.unique_id, s.ts_local ORDER BY s.rowid) AS rn,
               count(*) OVER (PARTITION BY s.unique_id, s.ts_local) AS cnt
        FROM staged s JOIN grid g ON g.ts_local = s.ts_local
        WHERE g.ds_first <> g.ds_second
    """)
    rows = f"""staged s
            LEFT JOIN grid g ON g.ts_local = coalesce(s.ts_local, timezone({tz}, timezone('UTC', s.ts_utc)))
            LEFT JOIN ambiguous a ON a.rec = s.rowid - {base}"""
    ds = f"""CASE
                     WHEN s.ts_local IS NULL THEN {aware_ds}
                     WHEN a.rec IS NULL THEN g.ds_first
                     WHEN a.rn = 1 THEN g.ds_first
                     ELSE g.ds_second
                   END"""
    dst = f"""WHEN s.ts_local IS NOT NULL AND g.ds_first IS NULL THEN {code("nonexistent_local_time")}
                     WHEN a.rec IS NOT NULL AND (a.cnt <> 2) THEN {code("ambiguous_local_time")}"""
    create_checked(
        con,
        cfg,
        rows=rows,
        rec=f"s.rowid - {base} AS rec,",
        ds=ds,
        dst_reasons=dst,
        on_grid="g.on_grid",
        amb_cnt="a.cnt",
    )
    staged_rows = count(con, "SELECT count(*) FROM staged")
    checked_rows = count(con, "SELECT count(*) FROM checked")
    if staged_rows != checked_rows:
        raise ParityError(f"placing times: {staged_rows} rows parsed but {checked_rows} placed")
    # Free the parsed copy now: only ``checked`` is needed from here on.
    con.execute("DROP TABLE staged")
    return "{t}.rec"


def place_direct(con: duckdb.DuckDBPyConnection, cfg: PipelineConfig, staged_sql: str) -> str:
    """Parse and place in one pass (UTC pipelines, calendar frequencies on a fixed grid);
    returns the row-number expression of ``checked`` (its insertion order is the file's)."""
    tz = literal(cfg.source.timezone)
    step = int(pd.Timedelta(offset_of(cfg.series.frequency)).value // 1000)
    local = f"coalesce(s.ts_local, timezone({tz}, timezone('UTC', s.ts_utc)))"
    off = f"((epoch_us({local}) % {step} + {step}) % {step})"
    ds = f"make_timestamp(epoch_us({local}) - {off})" if cfg.ingest.snap_to_frequency else local
    create_checked(
        con,
        cfg,
        rows=f"({staged_sql}) s",
        rec="",
        ds=ds,
        dst_reasons="",
        on_grid=f"{off} = 0",
        amb_cnt="NULL",
    )
    base = count(con, "SELECT min(rowid) FROM checked")
    return f"({{t}}.rowid - {base})"
