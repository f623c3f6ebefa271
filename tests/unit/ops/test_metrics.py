"""Prometheus metrics read from a workspace's records, checked by parsing the exposition."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from steadycast.config import AlertsConfig
from steadycast.ops.alerts import send_alert
from steadycast.ops.hogs import run_history
from steadycast.ops.incidents import acknowledge, list_incidents, resolve
from steadycast.ops.metrics import render_metrics, write_textfile
from steadycast.storage.control import audit, connect, utcnow
from steadycast.storage.runlog import get_run
from steadycast.workspace import Workspace
from tests.observability_workspace import Observed, real_run_workspace

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
def workspace_with_runs(observed: Observed, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The observed runs (meters: two published, one held; other: one failed), one incident
    acknowledged, and a run of "other" still in progress."""
    ws = observed.copy(tmp_path_factory.mktemp("metrics")).ws
    acknowledge(ws.control_path, list_incidents(ws.control_path, state="open")[-1].id)
    with connect(ws.control_path) as con:
        con.execute(
            "INSERT INTO runs (run_id, pipeline, status, started_at) VALUES (?, ?, 'running', ?)",
            ("other-2", "other", utcnow()),
        )
    return ws


def finished(ws: Workspace, pipeline: str) -> list[dict[str, object]]:
    """The pipeline's finished runs, newest first, with their stages."""
    return [r for r in run_history(ws, pipeline) if r["status"] != "running"]


def stage_sum(ws: Workspace, pipeline: str, stage: str, figure: str) -> float:
    return sum(
        float(s[figure] or 0)
        for run in finished(ws, pipeline)
        for s in run["stages"]  # type: ignore[attr-defined]
        if s["name"] == stage
    )


def test_runs_gate_and_fallback(workspace_with_runs: Workspace, observed: Observed) -> None:
    ws = workspace_with_runs
    found = samples(render_metrics(ws).decode())
    assert value(found, "steadycast_runs_total", pipeline="meters", status="published") == 2
    assert value(found, "steadycast_runs_total", pipeline="meters", status="held") == 1
    assert value(found, "steadycast_runs_total", pipeline="other", status="failed") == 1
    assert value(found, "steadycast_runs_in_progress", pipeline="other") == 1
    assert value(found, "steadycast_gate_decisions_total", pipeline="meters", decision="held") == 1
    assert (
        value(found, "steadycast_gate_decisions_total", pipeline="meters", decision="published")
        == 2
    )
    assert (
        "steadycast_gate_decisions_total",
        (("decision", "failed"), ("pipeline", "other")),
    ) not in found
    # The newest finished run of "meters" is the one published after the held one.
    newest = get_run(ws.control_path, observed.published)
    assert newest is not None and finished(ws, "meters")[0]["run_id"] == observed.published
    assert (
        value(found, "steadycast_series_on_fallback", pipeline="meters")
        == (newest["fallback_series"])
    )
    duration = value(
        found, "steadycast_last_run_duration_seconds", pipeline="meters", status="published"
    )
    assert 0 <= duration < 600
    assert value(found, "steadycast_last_published_timestamp_seconds", pipeline="meters") > 1.7e9


def test_stage_model_quarantine_and_incident_figures(workspace_with_runs: Workspace) -> None:
    ws = workspace_with_runs
    found = samples(render_metrics(ws).decode())
    for stage in ("snapshot", "forecast"):
        assert value(
            found, "steadycast_stage_cpu_seconds_total", pipeline="meters", stage=stage
        ) == pytest.approx(stage_sum(ws, "meters", stage, "cpu_s"))
    assert value(
        found, "steadycast_stage_rows_in_total", pipeline="meters", stage="snapshot"
    ) == stage_sum(ws, "meters", "snapshot", "rows_in")
    assert value(
        found, "steadycast_stage_rows_out_total", pipeline="meters", stage="forecast"
    ) == stage_sum(ws, "meters", "forecast", "rows_out")
    # Three forecasts of 8 series (the stuck one left out) over the horizon of 12 steps.
    assert stage_sum(ws, "meters", "forecast", "rows_out") == 3 * 8 * 12
    newest = finished(ws, "meters")[0]["stages"][0]  # type: ignore[index]
    assert value(
        found, "steadycast_last_run_stage_peak_rss_bytes", pipeline="meters", stage=newest["name"]
    ) == pytest.approx(newest["peak_rss_mb"] * 1024 * 1024)
    usage = [
        m
        for run in finished(ws, "meters")
        for m in (get_run(ws.control_path, str(run["run_id"])) or {}).get("models", [])
    ]
    for model in {m["model"] for m in usage}:
        assert value(found, "steadycast_model_failures_total", pipeline="meters", model=model) == (
            sum(m["failures"] for m in usage if m["model"] == model)
        )
        assert value(
            found, "steadycast_model_cpu_seconds_total", pipeline="meters", model=model
        ) == pytest.approx(sum(m["cpu_s"] for m in usage if m["model"] == model))
    assert value(found, "steadycast_quarantined_rows", pipeline="meters", reason="below_min") == 1
    assert (
        value(found, "steadycast_quarantined_rows", pipeline="meters", reason="not_a_number") == 1
    )
    assert value(found, "steadycast_store_readable") == 1
    for state, name in (("open", "open"), ("acknowledged", "acknowledged")):
        live = list_incidents(ws.control_path, state=state)
        assert live, state
        for incident in live:
            count = sum(
                i.severity == incident.severity for i in live if i.pipeline == incident.pipeline
            )
            assert (
                value(
                    found,
                    f"steadycast_{name}_incidents",
                    pipeline=incident.pipeline,
                    severity=incident.severity,
                )
                == count
            )


def test_textfile_is_written_whole(workspace_with_runs: Workspace, tmp_path: Path) -> None:
    target = tmp_path / "steadycast.prom"
    target.write_text("old")
    assert write_textfile(workspace_with_runs, target) == target
    assert [p.name for p in tmp_path.iterdir()] == ["steadycast.prom"]
    assert samples(target.read_text()) == samples(render_metrics(workspace_with_runs).decode())


def test_an_unreadable_store_is_reported_not_raised(observed: Observed, tmp_path: Path) -> None:
    ws = observed.copy(tmp_path).ws
    ws.store_path.unlink()
    found = samples(render_metrics(ws).decode())
    assert value(found, "steadycast_store_readable") == 0
    assert value(found, "steadycast_runs_total", pipeline="meters", status="published") == 2


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


def test_incidents_opened_and_resolved_are_counted_from_the_audit_log(
    observed: Observed, tmp_path: Path
) -> None:
    ws = observed.copy(tmp_path).ws
    found = samples(render_metrics(ws).decode())
    everything = list_incidents(ws.control_path)
    assert everything
    for incident in everything:
        with connect(ws.control_path) as con:
            opened = con.execute(
                "SELECT count(*) FROM audit WHERE action = 'incident.opened' AND pipeline = ? "
                "AND json_extract(detail, '$.kind') = ? AND json_extract(detail, '$.severity') = ?",
                (incident.pipeline, incident.kind, incident.severity),
            ).fetchone()[0]
        assert opened >= 1
        assert (
            value(
                found,
                "steadycast_incidents_opened_total",
                pipeline=incident.pipeline,
                kind=incident.kind,
                severity=incident.severity,
            )
            == opened
        )
    # Resolving one changes the open gauge, never the count of incidents opened.
    before = sum(v for (n, _), v in found.items() if n == "steadycast_incidents_opened_total")
    live = list_incidents(ws.control_path, state="open")[0]
    resolve(ws.control_path, live.id, note="fixed at the source")
    after = samples(render_metrics(ws).decode())
    assert sum(v for (n, _), v in after.items() if n == "steadycast_incidents_opened_total") == (
        before
    )
    assert (
        value(after, "steadycast_incidents_resolved_total", pipeline=live.pipeline, kind=live.kind)
        == found.get(
            (
                "steadycast_incidents_resolved_total",
                (("kind", live.kind), ("pipeline", live.pipeline)),
            ),
            0,
        )
        + 1
    )


def test_every_pipeline_starts_its_counters_at_zero(workspace_with_runs: Workspace) -> None:
    """So the first held run or failed alert is an increase, not a new series."""
    found = samples(render_metrics(workspace_with_runs).decode())
    for decision in ("approved", "rolled_back"):
        assert (
            value(found, "steadycast_gate_decisions_total", pipeline="other", decision=decision)
            == 0
        )
    assert value(found, "steadycast_runs_total", pipeline="other", status="held") == 0
    for channel in ("webhook", "command"):
        assert (
            value(found, "steadycast_alert_failures_total", pipeline="meters", channel=channel) == 0
        )


def test_alert_failures_are_counted(workspace: Workspace) -> None:
    config = AlertsConfig(command=["false"], retries=0)
    event = {"event": "incident.opened", "pipeline": "meters", "severity": "error", "title": "t"}
    for _ in range(2):
        send_alert(config, event, workspace.control_path)
    found = samples(render_metrics(workspace).decode())
    assert (
        value(found, "steadycast_alert_failures_total", pipeline="meters", channel="command") == 2
    )
    assert value(found, "steadycast_alerts_sent_total", pipeline="meters", channel="command") == 0


def test_an_approval_that_continued_a_stopped_run_is_one_approval(workspace: Workspace) -> None:
    """Continuing a run its data checks stopped publishes a release on the way (audited as
    ``release.published``): the gate held that run, so it counts as held, then approved."""
    path = workspace.control_path
    audit(path, "run.started", pipeline="meters", subject="r1")
    audit(path, "release.published", pipeline="meters", subject="rel1", detail={"run_id": "r1"})
    audit(path, "run.started", pipeline="meters", subject="r2")
    audit(path, "run.held", pipeline="meters", subject="r2", reason="blocking checks")
    audit(path, "release.published", pipeline="meters", subject="rel2", detail={"run_id": "r2"})
    audit(path, "run.approved", pipeline="meters", subject="r2", detail={"release_id": "rel2"})
    audit(path, "release.rollback", pipeline="meters", subject="rel1", reason="r")
    audit(path, "ingest.ingested", pipeline="meters", subject="b1")
    audit(path, "ingest.skipped", pipeline="meters", subject="b1")
    found = samples(render_metrics(workspace).decode())
    decisions = {
        d: value(found, "steadycast_gate_decisions_total", pipeline="meters", decision=d)
        for d in ("published", "held", "approved", "rolled_back")
    }
    assert decisions == {"published": 1, "held": 1, "approved": 1, "rolled_back": 1}
    assert value(found, "steadycast_runs_total", pipeline="meters", status="published") == 1
    assert value(found, "steadycast_runs_started_total", pipeline="meters") == 2
    for status in ("ingested", "skipped"):
        assert (
            value(found, "steadycast_ingest_batches_total", pipeline="meters", status=status) == 1
        )
