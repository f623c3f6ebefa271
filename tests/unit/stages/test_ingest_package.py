"""The ingestion package: its public names, its light import, and parity as the last word of a
batch (a batch whose rows do not add up is refused whole)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import steadycast
import steadycast.ingestion
from steadycast.errors import ParityError
from steadycast.ingestion import ingest
from steadycast.storage import store
from steadycast.workspace import Workspace


def test_the_package_exports_the_ingest_entry_points() -> None:
    names = steadycast.ingestion.__all__
    assert {"BatchResult", "REASONS", "ingest", "ingest_file", "quarantined"} <= set(names)
    for name in names:
        assert getattr(steadycast.ingestion, name) is not None, name
    assert steadycast.ingestion.ingest is steadycast.ingest
    assert steadycast.ingestion.REASONS[-2:] == ("conflicting_duplicate", "duplicate")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        steadycast.ingestion.nope  # noqa: B018


def test_the_time_grid_loads_without_the_reader() -> None:
    """The run, the report and the server import ``timegrid``; that must not load the reader."""
    code = (
        "import sys, steadycast.ingestion.timegrid\n"
        "print(' '.join(m for m in sys.modules if m.startswith('steadycast.ingestion.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["steadycast.ingestion.timegrid"]


def test_a_batch_whose_rows_do_not_add_up_is_refused_whole(
    workspace: Workspace,
    make_pipeline: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_pipeline()
    data = tmp_path / "readings.csv"
    data.write_text(
        "meter_id,timestamp,kwh\n"
        "a,2024-01-01 00:00,1\n"
        "a,2024-01-01 01:00,oops\n"
        "a,2024-01-01 02:00,3\n",
        encoding="utf-8",
    )
    # A fault that loses the bad row instead of quarantining it.
    monkeypatch.setattr(
        "steadycast.ingestion.batch.quarantine_checked", lambda *args, **kwargs: None
    )
    with pytest.raises(ParityError) as caught:
        ingest(workspace, "meters", [data])
    assert str(caught.value) == (
        f"{data}: parity broken: read 3 rows but stored 2 and quarantined 0; nothing was committed"
    )
    with store.reading(workspace.store_path) as con:
        for table in ("batches", "observations", "quarantine"):
            [(rows,)] = con.execute(f"SELECT count(*) FROM {table}").fetchall()
            assert rows == 0, table

    monkeypatch.undo()
    [batch] = ingest(workspace, "meters", [data])
    assert (batch.status, batch.rows_stored, batch.quarantine_reasons) == (
        "ingested",
        2,
        {"not_a_number": 1},
    )
