"""Duplicates inside a batch: the same (unique_id, ds) twice among the good rows of ``checked``.

Most batches have none, so the common case is a proof that no key repeats, with one bit per
series and time step; only when the proof fails are the keys hashed and compared.
"""

from __future__ import annotations

import duckdb
import pandas as pd
from pandas.tseries.offsets import Tick

from steadycast.config import PipelineConfig
from steadycast.ingestion._reasons import code
from steadycast.ingestion._sql import count
from steadycast.ingestion.timegrid import offset_of

DAY_US = 86_400_000_000  # the step of a calendar frequency in the no-repeat proof: one day
# Above this many bits (256 MB) for all series' time grids, the exact duplicate check is cheaper.
MAX_KEY_BITS = 1 << 31


def _no_repeated_keys(con: duckdb.DuckDBPyConnection, cfg: PipelineConfig) -> bool:
    """True when no good row's (unique_id, ds) repeats, shown without a hash table of every key.

    Each series' times become bits on one grid (one bit per step from the batch's first time);
    if every series sets as many bits as it has rows, no two of its rows share a time. A False
    is only "maybe": two times in one step (a DST day, a calendar month) share a bit, and the
    exact check decides.
    """
    lo, hi, series = con.execute(
        "SELECT epoch_us(min(ds)), epoch_us(max(ds)), approx_count_distinct(unique_id) "
        "FROM checked WHERE code IS NULL"
    ).fetchone() or (None, None, 0)
    if lo is None or hi is None:
        return True
    offset = offset_of(cfg.series.frequency)
    step = int(pd.Timedelta(offset).value // 1000) if isinstance(offset, Tick) else DAY_US
    slots = (int(hi) - int(lo)) // step + 1
    if slots * int(series * 1.1 + 1) > MAX_KEY_BITS:
        return False
    return not count(
        con,
        f"""SELECT count(*) FROM (
              SELECT count(*) AS n,
                     bit_count(bitstring_agg(CAST((epoch_us(ds) - {int(lo)}) // {step} AS BIGINT),
                                             0, {slots - 1})) AS times
              FROM checked WHERE code IS NULL GROUP BY unique_id
            ) WHERE n <> times""",
    )


def dedupe(con: duckdb.DuckDBPyConnection, rec: str, cfg: PipelineConfig) -> None:
    """Duplicates of (unique_id, ds) inside the batch: exact copies are stored once and the
    extra copies quarantined; copies that disagree cannot be told apart, so all are."""
    if _no_repeated_keys(con, cfg):
        return
    # A 64-bit hash finds the candidate keys in one pass; most batches have none, and then
    # nothing more is read. The exact keys are compared only for the candidates.
    con.execute("""
        CREATE TEMP TABLE suspects AS
        SELECT hash(unique_id, ds) AS h FROM checked WHERE code IS NULL
        GROUP BY 1 HAVING count(*) > 1
    """)
    if not count(con, "SELECT count(*) FROM suspects"):
        return
    con.execute(f"""
        CREATE TEMP TABLE dupes AS
        SELECT unique_id, ds, min({rec.format(t="checked")}) AS first_rec,
               min(y) <> max(y) AS conflicting, count(*) AS n
        FROM checked
        WHERE code IS NULL AND hash(unique_id, ds) IN (SELECT h FROM suspects)
        GROUP BY unique_id, ds HAVING count(*) > 1
    """)
    # Only the code changes, in place (a row keeps its place in the file); the text shown for
    # a duplicate is made from ``dupes`` when it is quarantined.
    con.execute(f"""
        UPDATE checked SET
          code = CASE WHEN d.conflicting THEN {code("conflicting_duplicate")}
                      ELSE {code("duplicate")} END
        FROM dupes d
        WHERE checked.unique_id = d.unique_id AND checked.ds = d.ds AND checked.code IS NULL
          AND (d.conflicting OR {rec.format(t="checked")} <> d.first_rec)
    """)
