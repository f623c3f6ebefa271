"""Plugged-in models inside a real run: the good one wins on merit, the bad ones end in a fallback."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from steadycast_chaos_models import planted_pattern

from steadycast.ingestion.batch import ingest
from steadycast.pipeline.run import run_pipeline
from steadycast.storage import store
from steadycast.workspace import Workspace

TIMEOUT_S = 4.0


def planted_workspace(
    tmp_path: Path, candidates: list[str], series: int = 4, timeout_s: float = TIMEOUT_S
) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    quoted = ", ".join(f'"{c}"' for c in candidates)
    (ws.pipelines_dir / "p.toml").write_text(
        '[source]\nid_column="id"\ntime_column="t"\nvalue_column="v"\n'
        '[series]\nfrequency="1h"\nhorizon=12\nseason_lengths=[24]\n'
        f"[models]\ncandidates=[{quoted}]\n"
        "[backtest]\nwindows=2\nensemble_top_k=0\n"
        f"[forecast]\ntimeout_s={timeout_s}\nmemory_mb=1024\nworkers=2\n"
    )
    ds = pd.date_range("2024-01-01", periods=24 * 10, freq="h")
    frames = [
        pd.DataFrame(
            {
                "id": f"s{i}",
                "t": ds.strftime("%Y-%m-%d %H:%M"),
                "v": 10 + i + (1 + i) * planted_pattern(ds),
            }
        )
        for i in range(series)
    ]
    path = tmp_path / "planted.csv"
    pd.concat(frames).to_csv(path, index=False)
    ingest(ws, "p", [path])
    return ws


def provenance(ws: Workspace, run_id: str) -> pd.DataFrame:
    with store.reading(ws.store_path) as con:
        return con.execute(
            "SELECT * FROM series_provenance WHERE run_id = ? ORDER BY unique_id", [run_id]
        ).fetchdf()


def failures(ws: Workspace, run_id: str) -> dict[str, str]:
    with store.reading(ws.store_path) as con:
        rows = con.execute(
            "SELECT DISTINCT model, status FROM backtest_scores WHERE run_id = ? AND status <> 'ok'",
            [run_id],
        ).fetchall()
    return dict(rows)


@pytest.fixture(autouse=True)
def _before_the_test() -> None:
    """The processes already there (the session's S3 and PostgreSQL test servers) are no
    leftover of the test's run."""
    global _EARLIER
    _EARLIER = {p.pid for p in psutil.Process().children(recursive=True)}


_EARLIER: set[int] = set()


def no_leftovers() -> None:
    """No process of model code outlives its run. (multiprocessing's resource tracker, which a
    run on several partition processes starts once per interpreter, is no model code.)"""
    kids = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.is_running()
        and p.pid not in _EARLIER
        and "multiprocessing.resource_tracker" not in " ".join(p.cmdline())
    ]
    assert kids == [], [p.cmdline() for p in kids]


def test_good_plugin_selected_bad_ones_contained(tmp_path: Path) -> None:
    ws = planted_workspace(
        tmp_path,
        ["SeasonalNaive", "ChaosOracle", "ChaosHang", "ChaosSegfault", "ChaosNaN", "ChaosWrongIds"],
    )
    started = time.monotonic()
    result = run_pipeline(ws, "p")
    assert result.status == "published", result.error
    prov = provenance(ws, result.run_id)
    assert set(prov["model"]) == {"ChaosOracle"}
    assert set(prov["source"]) == {"selected"}
    assert set(failures(ws, result.run_id)) >= {
        "ChaosHang",
        "ChaosSegfault",
        "ChaosNaN",
        "ChaosWrongIds",
    }
    # Two backtest windows of a hanging model cost two time limits (and worker restarts), not more.
    assert time.monotonic() - started < 120
    no_leftovers()


def test_only_bad_candidates_every_series_on_a_recorded_fallback(tmp_path: Path) -> None:
    ws = planted_workspace(tmp_path, ["ChaosNaN", "ChaosExit", "ChaosShort"])
    result = run_pipeline(ws, "p")
    # Every series forecast by a fallback: the run completes, and the gate holds it for a person.
    assert result.status == "held", result.error
    assert "fallback" in str(result.error)
    prov = provenance(ws, result.run_id)
    assert result.fallback_series == 4
    assert set(prov["source"]) == {"fallback"}
    assert set(prov["model"]) <= {"SeasonalNaive", "Naive"}
    assert prov["fallback_reason"].str.len().gt(0).all()
    no_leftovers()


@pytest.mark.slow
def test_every_chaos_plugin_at_once(tmp_path: Path) -> None:
    bad = [
        "ChaosHang",
        "ChaosSpin",
        "ChaosHog",
        "ChaosSegfault",
        "ChaosExit",
        "ChaosPrinter",
        "ChaosRaise",
        "ChaosNaN",
        "ChaosShort",
        "ChaosWrongIds",
        "ChaosNotAFrame",
        "ChaosFork",
    ]
    ws = planted_workspace(tmp_path, ["SeasonalNaive", "ChaosOracle", *bad])
    result = run_pipeline(ws, "p")
    assert result.status == "published", result.error
    assert set(provenance(ws, result.run_id)["model"]) == {"ChaosOracle"}
    assert set(failures(ws, result.run_id)) >= set(bad) - {"ChaosPrinter"}
    no_leftovers()
