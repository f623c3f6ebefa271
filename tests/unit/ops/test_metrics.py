"""Prometheus metrics read from a workspace's records, checked by parsing the exposition."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from steadycast.ops.metrics import render_metrics, write_textfile
from steadycast.storage.control import connect, utcnow
from steadycast.workspace import Workspace
from tests.observability_workspace import real_run_workspace, record_run, recorded_workspace

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


@pytest.fixture(scope="module")
def workspace_with_runs(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws, _ = recorded_workspace(tmp_path_factory.mktemp("metrics"))
    record_run(ws, "meters", "meters-held-1", status="held", fallback=4)
    record_run(ws, "other", "other-1", status="failed", cpu_scale=2.0)
    with connect(ws.control_path) as con:
        con.execute(
            "INSERT INTO runs (run_id, pipeline, status, started_at) VALUES (?, ?, 'running', ?)",
            ("other-2", "other", utcnow()),
        )
        for state, severity in (("open", "error"), ("open", "error"), ("acknowledged", "warning")):
            con.execute(
                "INSERT INTO incidents (fingerprint, pipeline, kind, severity, state, title, "
                "first_seen, last_seen) VALUES (?, 'meters', 'gate', ?, ?, 't', ?, ?)",
                (f"fp-{state}-{utcnow()}", severity, state, utcnow(), utcnow()),
            )
    return ws


def test_runs_gate_and_fallback(workspace_with_runs: Workspace) -> None:
    found = samples(render_metrics(workspace_with_runs).decode())
    assert value(found, "steadycast_runs_total", pipeline="meters", status="published") == 1
    assert value(found, "steadycast_runs_total", pipeline="meters", status="held") == 1
    assert value(found, "steadycast_runs_total", pipeline="other", status="failed") == 1
    assert value(found, "steadycast_runs_in_progress", pipeline="other") == 1
    assert value(found, "steadycast_gate_decisions_total", pipeline="meters", decision="held") == 1
    assert (
        value(found, "steadycast_gate_decisions_total", pipeline="meters", decision="published")
        == 1
    )
    assert (
        "steadycast_gate_decisions_total",
        (("decision", "failed"), ("pipeline", "other")),
    ) not in found
    # The newest finished run of "meters" is the held one, with 4 series on fallback.
    assert value(found, "steadycast_series_on_fallback", pipeline="meters") == 4
    duration = value(
        found, "steadycast_last_run_duration_seconds", pipeline="meters", status="held"
    )
    assert 0 <= duration < 60
    assert value(found, "steadycast_last_published_timestamp_seconds", pipeline="meters") > 1.7e9


def test_stage_model_quarantine_and_incident_figures(workspace_with_runs: Workspace) -> None:
    found = samples(render_metrics(workspace_with_runs).decode())
    # Two recorded "meters" runs with 3.0 s of forecast CPU each; "other" ran at twice the cost.
    assert value(
        found, "steadycast_stage_cpu_seconds_total", pipeline="meters", stage="forecast"
    ) == pytest.approx(6.0)
    assert value(
        found, "steadycast_stage_cpu_seconds_total", pipeline="other", stage="forecast"
    ) == pytest.approx(6.0)
    assert (
        value(found, "steadycast_stage_rows_in_total", pipeline="meters", stage="snapshot") == 4320
    )
    assert (
        value(found, "steadycast_stage_rows_out_total", pipeline="meters", stage="forecast") == 216
    )
    assert value(
        found, "steadycast_last_run_stage_peak_rss_bytes", pipeline="meters", stage="forecast"
    ) == pytest.approx(202 * 1024 * 1024)
    assert value(found, "steadycast_model_failures_total", pipeline="meters", model="SES") == 2
    assert value(found, "steadycast_model_cpu_seconds_total", pipeline="other", model="SES") == 4
    assert value(found, "steadycast_quarantined_rows", pipeline="meters", reason="below_min") == 1
    assert (
        value(found, "steadycast_quarantined_rows", pipeline="meters", reason="not_a_number") == 1
    )
    assert value(found, "steadycast_store_readable") == 1
    assert value(found, "steadycast_open_incidents", pipeline="meters", severity="error") == 2
    assert (
        value(found, "steadycast_acknowledged_incidents", pipeline="meters", severity="warning")
        == 1
    )


def test_textfile_is_written_whole(workspace_with_runs: Workspace, tmp_path: Path) -> None:
    target = tmp_path / "steadycast.prom"
    target.write_text("old")
    assert write_textfile(workspace_with_runs, target) == target
    assert [p.name for p in tmp_path.iterdir()] == ["steadycast.prom"]
    assert samples(target.read_text()) == samples(render_metrics(workspace_with_runs).decode())


def test_an_unreadable_store_is_reported_not_raised(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    record_run(ws, "meters", "meters-1")
    ws.store_path.unlink()
    found = samples(render_metrics(ws).decode())
    assert value(found, "steadycast_store_readable") == 0
    assert value(found, "steadycast_runs_total", pipeline="meters", status="published") == 1


@pytest.mark.slow
def test_metrics_of_a_real_run(tmp_path: Path) -> None:
    ws, _ = real_run_workspace(tmp_path)
    found = samples(render_metrics(ws).decode())
    assert value(found, "steadycast_runs_total", pipeline="meters", status="published") == 1
    assert value(found, "steadycast_series_on_fallback", pipeline="meters") == 0
    assert value(found, "steadycast_last_run_series", pipeline="meters") == 5
    assert (
        value(found, "steadycast_stage_cpu_seconds_total", pipeline="meters", stage="forecast") > 0
    )
    snapshot_rows = value(
        found, "steadycast_stage_rows_in_total", pipeline="meters", stage="snapshot"
    )
    assert snapshot_rows == 5 * 24 * 10 - 2  # two rows quarantined
    assert value(found, "steadycast_quarantined_rows", pipeline="meters", reason="below_min") == 1
    assert sum(v for (n, _), v in found.items() if n == "steadycast_model_tasks_total") > 0
