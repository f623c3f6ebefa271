"""Ingestion: one input file becomes one batch, every row stored or quarantined with a reason.

The modules follow a file through a batch:

    batch.py        the one transaction: ingest, ingest_file, quarantined, BatchResult
    _read.py        the file: format, junk refusal, content hash, DuckDB's reader, long lines
    _rows.py        from file to the ``checked`` table: read, parse, place, check, dedupe
    _placement.py   times: the parser chosen from a sample, the parsing SQL, rows onto the grid
    timegrid.py     the grid itself: frequencies, zones, daylight saving, the accepted range
    _reasons.py     row reasons: codes (REASONS), the test that picks one, the sentences
    _dedupe.py      the same (series, time) twice in a batch
    _apply.py       good rows into observations: new, corrected (old value to history), unchanged
    _quarantine.py  bad rows into the quarantine, with their line numbers
    _exact.py       the exact text of quarantined rows, read back from the file
    rawlines.py     the line scanner behind it
    _ledger.py      counts, parity and the batch ledger row
    covariates.py   covariate files: the same batch, once per declared covariate column
    frame.py        a DataFrame as a batch: named by its content hash, rows by position
    sources.py      what a user names (folders, globs, stdin, datasets, s3:// URLs, the
                    configured [source]) expanded into batches of one file each
    postgres.py     a [source] query's rows from PostgreSQL, as an Arrow table (read_query)
    _progress.py    progress of long statements, for the command line
    _sql.py         SQL text helpers

Importing this package loads none of its modules: ``timegrid`` is used by the run, the
report and the server, which do not need the reader. The names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from steadycast.ingestion._reasons import REASONS
    from steadycast.ingestion.batch import BatchResult, ingest, ingest_file, quarantined

__all__ = ["REASONS", "BatchResult", "ingest", "ingest_file", "quarantined"]

_HOME = {
    "REASONS": "steadycast.ingestion._reasons",
    "BatchResult": "steadycast.ingestion.batch",
    "ingest": "steadycast.ingestion.batch",
    "ingest_file": "steadycast.ingestion.batch",
    "quarantined": "steadycast.ingestion.batch",
}


def __getattr__(name: str) -> object:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'steadycast.ingestion' has no attribute {name!r}")
