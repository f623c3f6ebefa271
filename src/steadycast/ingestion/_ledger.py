"""A batch's figures: rows read, stored and quarantined, parity between them, the ledger row.

Parity ``rows_read == rows_stored + rows_quarantined`` is checked before the commit; a batch
that breaks it raises and nothing of it is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import duckdb

from steadycast.errors import ParityError
from steadycast.ingestion._apply import Applied
from steadycast.ingestion._read import Fingerprint
from steadycast.ingestion._sql import count


class BatchKey(NamedTuple):
    """What names a batch's rows in the quarantine and the ledger."""

    pipeline: str
    batch_id: str
    file: str


@dataclass(frozen=True)
class Counts:
    """What one batch did to its rows (the figures of ``BatchResult`` and of the ledger)."""

    rows_read: int
    rows_stored: int
    quarantine_reasons: dict[str, int]
    rows_new: int
    rows_corrected: int
    rows_unchanged: int

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantine_reasons.values())


def count_rows(
    con: duckdb.DuckDBPyConnection, key: BatchKey, has_rejects: bool, applied: Applied
) -> Counts:
    """Count the batch from what was written: ``checked``, ``rej`` and its quarantine rows."""
    rejected = count(con, "SELECT count(*) FROM rej") if has_rejects else 0
    rows_read = count(con, "SELECT count(*) FROM checked") + rejected
    rows_stored = count(con, "SELECT count(*) FROM checked WHERE code IS NULL")
    reasons = con.execute(
        "SELECT reason, count(*) FROM quarantine WHERE pipeline = ? AND batch_id = ? "
        "GROUP BY reason ORDER BY reason",
        [key.pipeline, key.batch_id],
    ).fetchall()
    return Counts(
        rows_read=rows_read,
        rows_stored=rows_stored,
        quarantine_reasons={str(k): int(v) for k, v in reasons},
        rows_new=rows_stored - applied.corrected - applied.unchanged,
        rows_corrected=applied.corrected,
        rows_unchanged=applied.unchanged,
    )


def check_parity(key: BatchKey, counts: Counts) -> None:
    """Raise ``ParityError`` when a row was neither stored nor quarantined (or both)."""
    if counts.rows_read != counts.rows_stored + counts.rows_quarantined:
        raise ParityError(
            f"{key.file}: parity broken: read {counts.rows_read} rows but stored "
            f"{counts.rows_stored} and quarantined {counts.rows_quarantined}; "
            "nothing was committed"
        )


def record_batch(
    con: duckdb.DuckDBPyConnection,
    key: BatchKey,
    fp: Fingerprint,
    counts: Counts,
    batch_no: int,
) -> None:
    """Write the batch's row of the ledger (``batches``): it is what makes a re-ingest a skip."""
    con.execute(
        "INSERT INTO batches VALUES (?, ?, ?, ?, ?, now()::TIMESTAMP, ?, ?, ?, ?, ?, ?, ?)",
        [
            key.pipeline,
            key.batch_id,
            fp.sha256,
            key.file,
            fp.format,
            counts.rows_read,
            counts.rows_stored,
            counts.rows_quarantined,
            counts.rows_new,
            counts.rows_corrected,
            counts.rows_unchanged,
            batch_no,
        ],
    )
