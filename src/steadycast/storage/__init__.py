"""Storage: everything a workspace keeps on disk, and the only code that touches it directly.

    store.py     the embedded DuckDB store: observations, their history, quarantine, batch
                 ledger, check results and backtest scores; versioned migrations
    control.py   the control plane (SQLite in WAL mode): runs, stages, incidents, the audit
                 log and locks, which many processes read while one writes
    runlog.py    the run record on the control plane, and the one-run-per-pipeline lock
    outcome.py   what happened to a run after it ended (approved, rolled back), and the one
                 sentence every screen shows for it
    releases.py  immutable releases behind an atomically replaced pointer, and held runs
    export.py    the current release in the contract's columns, as CSV, Parquet or JSON

Importing this package loads none of its modules: callers import the module they need
(``from steadycast.storage import releases``), so the server does not load DuckDB to serve
a forecast.
"""

__all__ = ["control", "export", "outcome", "releases", "runlog", "store"]
