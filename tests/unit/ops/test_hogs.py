"""Run history and the resource hogs, over a workspace where one pipeline is much heavier."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from steadycast.errors import UsageError
from steadycast.ops.hogs import hogs, parse_since, run_history
from steadycast.storage import control
from steadycast.workspace import Workspace
from tests.observability_workspace import real_run_workspace

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
MODELS = ["Naive", "SeasonalNaive", "HistoricAverage", "SES"]


def record_run(
    ws: Workspace, pipeline: str, run_id: str, started_at: str, cpu_scale: float, peak_mb: float
) -> None:
    """A finished run with chosen costs and start time, in the control plane: the ranking and
    the time window are about those figures, which a real run cannot be made to have."""
    with control.connect(ws.control_path) as con:
        con.execute(
            "INSERT INTO runs (run_id, pipeline, status, started_at, finished_at, engine) "
            "VALUES (?, ?, 'published', ?, ?, 'local')",
            (run_id, pipeline, started_at, started_at),
        )
        for seq, (name, wall, cpu) in enumerate(
            [("snapshot", 0.1, 0.05), ("forecast", 4.0, 3.0), ("publish", 0.1, 0.02)], start=1
        ):
            con.execute(
                "INSERT INTO stages (run_id, name, seq, status, started_at, wall_s, cpu_s, "
                "peak_rss_mb, rows_in, rows_out) VALUES (?, ?, ?, 'ok', ?, ?, ?, ?, 2160, 108)",
                (run_id, name, seq, started_at, wall * cpu_scale, cpu * cpu_scale, peak_mb + seq),
            )
        for k, model in enumerate(MODELS):
            con.execute(
                "INSERT INTO model_usage VALUES (?, ?, 3, ?, ?, ?)",
                (run_id, model, int(k == 3), (k + 1) * 0.5 * cpu_scale, peak_mb + 10 * k),
            )


def stamp(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(scope="module")
def two_pipelines(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace.init(tmp_path_factory.mktemp("hogs") / "ws")
    for i in range(3):
        record_run(ws, "light", f"light-{i}", stamp(10 + i), cpu_scale=1.0, peak_mb=200.0)
    record_run(ws, "heavy", "heavy-0", stamp(5), cpu_scale=10.0, peak_mb=2000.0)
    # Heavier still, but outside a 2-day window.
    record_run(ws, "ancient", "ancient-0", stamp(24 * 30), cpu_scale=100.0, peak_mb=200.0)
    return ws


def test_heavy_pipeline_ranks_first(two_pipelines: Workspace) -> None:
    found = hogs(two_pipelines, timedelta(days=2), now=NOW)
    assert [p["pipeline"] for p in found["pipelines"]] == ["heavy", "light"]
    heavy, light = found["pipelines"]
    assert heavy["cpu_s"] == pytest.approx(10 * 3.07)
    assert light["runs"] == 3 and light["cpu_s"] == pytest.approx(3 * 3.07)
    assert heavy["peak_rss_mb"] == pytest.approx(2003.0)
    assert (found["stages"][0]["pipeline"], found["stages"][0]["stage"]) == ("heavy", "forecast")
    assert (found["models"][0]["model"], found["models"][0]["pipeline"]) == ("SES", "heavy")
    assert found["models"][0]["failures"] == 1


def test_window_and_memory_order(two_pipelines: Workspace) -> None:
    wide = hogs(two_pipelines, parse_since("60d"), now=NOW)
    assert wide["pipelines"][0]["pipeline"] == "ancient"
    by_memory = hogs(two_pipelines, timedelta(days=2), by="memory", now=NOW, limit=1)
    assert [p["pipeline"] for p in by_memory["pipelines"]] == ["heavy"]
    assert by_memory["models"][0]["peak_rss_mb"] == pytest.approx(2030.0)
    empty = hogs(two_pipelines, timedelta(hours=1), now=NOW)
    assert empty["pipelines"] == empty["stages"] == empty["models"] == []


def test_run_history_newest_first_with_stages(two_pipelines: Workspace) -> None:
    runs = run_history(two_pipelines)
    assert [r["run_id"] for r in runs] == ["heavy-0", "light-0", "light-1", "light-2", "ancient-0"]
    light = run_history(two_pipelines, "light", limit=2)
    assert [r["run_id"] for r in light] == ["light-0", "light-1"]
    stages = light[0]["stages"]
    assert [s["name"] for s in stages] == ["snapshot", "forecast", "publish"]
    assert {"wall_s", "cpu_s", "peak_rss_mb", "rows_in", "rows_out"} <= set(stages[0])
    assert light[0]["cpu_s"] == pytest.approx(3.07)
    assert light[0]["peak_rss_mb"] == pytest.approx(203.0)
    assert light[0]["wall_s"] is not None
    assert run_history(two_pipelines, "nobody") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        (" 2W ", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        ("7 d", timedelta(days=7)),
        ("90s", timedelta(seconds=90)),
    ],
)
def test_parse_since(text: str, expected: timedelta) -> None:
    assert parse_since(text) == expected


@pytest.mark.parametrize(
    "text", ["", "7", "d", "7y", "-1d", "0h", "7 days", "1e3s", "nanh", "infd", "+1d", "1.2.3h"]
)
def test_parse_since_names_the_bad_value(text: str) -> None:
    with pytest.raises(UsageError, match=r"--since .* (is not a time span|longer than zero)"):
        parse_since(text)


def test_bad_arguments_are_usage_errors(two_pipelines: Workspace) -> None:
    with pytest.raises(UsageError, match="--by 'disk' is not one of cpu, memory"):
        hogs(two_pipelines, timedelta(days=1), by="disk")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="limit must be at least 1"):
        run_history(two_pipelines, limit=0)


@pytest.mark.slow
def test_real_runs_of_two_pipelines(tmp_path: Path) -> None:
    """Two real pipelines; the one with more series and the slower models costs more CPU."""
    from steadycast.ingestion.batch import ingest
    from steadycast.pipeline.run import run_pipeline
    from tests.observability_workspace import PIPELINE, fleet_csv

    ws, _ = real_run_workspace(tmp_path)
    heavy = PIPELINE.replace('"HistoricAverage", "SES"', '"HistoricAverage", "SES", "AutoTheta"')
    (ws.pipelines_dir / "big.toml").write_text(heavy)
    ingest(ws, "big", [fleet_csv(tmp_path / "big.csv", [f"b{i}" for i in range(12)], days=14)])
    assert run_pipeline(ws, "big").status == "published"
    found = hogs(ws, timedelta(hours=1))
    assert [p["pipeline"] for p in found["pipelines"]] == ["big", "meters"]
    assert [r["pipeline"] for r in run_history(ws)] == ["big", "meters"]
