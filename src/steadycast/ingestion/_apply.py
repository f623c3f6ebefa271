"""Applying a batch's good rows to ``observations``: new keys are added, a changed value
replaces the stored one (which moves to ``observation_history``), an unchanged one is left."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from steadycast.ingestion._sql import count


@dataclass(frozen=True)
class Applied:
    """What applying the good rows did, and the small number that names the batch in storage."""

    batch_no: int
    corrected: int
    unchanged: int


def apply_good_rows(con: duckdb.DuckDBPyConnection, pipeline: str, batch_id: str) -> Applied:
    """Store the good rows of ``checked``; later corrections of a key win, the earlier value is
    kept in history with the batch that replaced it."""
    batch_no = count(con, "SELECT coalesce(max(batch_no), 0) + 1 FROM batches")
    # Values already stored for the same keys: corrections move the old value to history.
    first_batch = not count(con, "SELECT count(*) FROM batches WHERE pipeline = ?", [pipeline])
    con.execute(
        "CREATE TEMP TABLE existing AS "
        "SELECT o.unique_id, o.ds, o.y AS old_y, o.batch_no AS old_batch, c.y AS new_y "
        "FROM observations o JOIN checked c ON o.unique_id = c.unique_id AND o.ds = c.ds "
        f"WHERE o.pipeline = ? AND c.code IS NULL {'AND false' if first_batch else ''}",
        [pipeline],
    )
    corrected = count(con, "SELECT count(*) FROM existing WHERE old_y <> new_y")
    unchanged = count(con, "SELECT count(*) FROM existing WHERE old_y = new_y")
    if corrected:
        _keep_history(con, pipeline, batch_id)
    skip_unchanged = (
        "AND NOT EXISTS (SELECT 1 FROM existing e WHERE e.unique_id = c.unique_id "
        "AND e.ds = c.ds AND e.old_y = e.new_y)"
        if unchanged
        else ""
    )
    con.execute(
        "INSERT INTO observations SELECT ?, c.unique_id, c.ds, c.y, ? FROM checked c "
        f"WHERE c.code IS NULL {skip_unchanged}",
        [pipeline, batch_no],
    )
    return Applied(batch_no=batch_no, corrected=corrected, unchanged=unchanged)


def _keep_history(con: duckdb.DuckDBPyConnection, pipeline: str, batch_id: str) -> None:
    """Move the stored values this batch corrects to ``observation_history``."""
    con.execute(
        "INSERT INTO observation_history SELECT ?, e.unique_id, e.ds, e.old_y, b.batch_id, ?, "
        "now()::TIMESTAMP FROM existing e "
        "JOIN batches b ON b.pipeline = ? AND b.batch_no = e.old_batch "
        "WHERE e.old_y <> e.new_y",
        [pipeline, batch_id, pipeline],
    )
    con.execute(
        "DELETE FROM observations o USING existing e WHERE o.pipeline = ? "
        "AND o.unique_id = e.unique_id AND o.ds = e.ds AND e.old_y <> e.new_y",
        [pipeline],
    )
