"""Alerts against a real HTTP server on 127.0.0.1 and a real command: delivered, retried,
recorded when they fail, and never raising. From the background queue: ``notify`` never waits
for a receiver, a failing channel opens one "alerts undeliverable" incident that the next
delivery resolves, every attempt ends by the deadline, and each message says where to look
(links under ``base_url``, else commands)."""

from __future__ import annotations

import json
import shlex
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from steadycast.config import AlertsConfig
from steadycast.ops.alerts import (
    flush,
    incident_event,
    notify,
    redact_url,
    send_alert,
    slack_body,
)
from steadycast.ops.incidents import Finding, list_incidents, record_findings
from steadycast.storage import runlog
from steadycast.storage.control import audit_entries

EVENT: dict[str, Any] = {
    "event": "incident.opened",
    "incident_id": 7,
    "pipeline": "meters",
    "kind": "check",
    "severity": "error",
    "title": "flat_line failed for series 'm42' of pipeline 'meters'",
    "detail": "series 'm42': stuck at 0 for 60 readings in a row",
}


@dataclass
class Receiver:
    """A webhook receiver: answers ``fail_first`` requests with ``fail_status``, then 200."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    fail_first: int = 0
    fail_status: int = 500
    fail_headers: dict[str, str] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            state.paths.append(self.path)
            state.times.append(time.monotonic())
            if len(state.paths) <= state.fail_first:
                self.send_response(state.fail_status)
                for name, value in state.fail_headers.items():
                    self.send_header(name, value)
                self.end_headers()
                return
            state.bodies.append(body)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/SECRETTOKEN"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def control_path(tmp_path: Path) -> Path:
    return tmp_path / "control.sqlite"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fast(**kw: Any) -> AlertsConfig:
    return AlertsConfig.model_validate({"retries": 2, "backoff_s": 0.01, "timeout_s": 2, **kw})


def test_webhook_receives_a_slack_compatible_body_with_our_fields(
    receiver: Receiver, control_path: Path
) -> None:
    (delivery,) = send_alert(fast(webhook_url=receiver.url), EVENT, control_path)
    assert delivery.ok and delivery.attempts == 1 and delivery.status == 200
    (body,) = receiver.bodies
    assert body["text"].startswith(":rotating_light: steadycast incident #7 opened (error)")
    assert body["blocks"][0]["type"] == "section"
    assert "stuck at 0" in body["blocks"][0]["text"]["text"]
    for key in ("event", "incident_id", "pipeline", "severity", "title", "detail"):
        assert body[key] == EVENT[key]
    (entry,) = audit_entries(control_path)
    assert entry["action"] == "alert.delivered"
    assert entry["subject"] == "incident:7"
    assert entry["detail"]["attempts"] == 1


def test_a_webhook_that_fails_twice_is_retried_until_it_succeeds(
    receiver: Receiver, control_path: Path
) -> None:
    receiver.fail_first = 2
    (delivery,) = send_alert(fast(webhook_url=[receiver.url]), EVENT, control_path)
    assert delivery.ok and delivery.attempts == 3
    assert len(receiver.paths) == 3 and len(receiver.bodies) == 1


def test_a_channel_failing_forever_is_recorded_and_send_alert_returns(
    receiver: Receiver, control_path: Path
) -> None:
    receiver.fail_first = 100
    unreachable = f"http://user:pw@127.0.0.1:{closed_port()}/hooks/SECRET?token=abc"
    deliveries = send_alert(fast(webhook_url=[receiver.url, unreachable]), EVENT, control_path)
    assert [d.ok for d in deliveries] == [False, False]
    assert [d.attempts for d in deliveries] == [3, 3]
    assert deliveries[0].status == 500 and "HTTP 500" in (deliveries[0].error or "")
    assert "cannot connect" in (deliveries[1].error or "")
    failed = [e for e in audit_entries(control_path) if e["action"] == "alert.failed"]
    assert len(failed) == 2
    recorded = json.dumps(failed)
    assert "SECRET" not in recorded and "token=abc" not in recorded and "pw" not in recorded
    assert {e["detail"]["target"] for e in failed} == {
        f"http://127.0.0.1:{receiver.url.split(':')[2].split('/')[0]}/services/…",
        f"http://127.0.0.1:{unreachable.split(':')[3].split('/')[0]}/hooks/…",
    }


def test_a_client_error_is_not_retried(receiver: Receiver, control_path: Path) -> None:
    receiver.fail_first, receiver.fail_status = 100, 404
    (delivery,) = send_alert(fast(webhook_url=receiver.url), EVENT, control_path)
    assert not delivery.ok and delivery.attempts == 1 and delivery.status == 404


def test_too_many_requests_waits_as_long_as_retry_after_asks(
    receiver: Receiver, control_path: Path
) -> None:
    receiver.fail_first, receiver.fail_status = 1, 429
    receiver.fail_headers = {"Retry-After": "1"}
    (delivery,) = send_alert(fast(webhook_url=receiver.url), EVENT, control_path)
    assert delivery.ok and delivery.attempts == 2
    assert receiver.times[1] - receiver.times[0] >= 0.95  # not the 0.01 s of backoff


def test_a_retry_after_beyond_the_deadline_gives_up_at_once(
    receiver: Receiver, control_path: Path
) -> None:
    receiver.fail_first, receiver.fail_status = 100, 503
    receiver.fail_headers = {"Retry-After": "120"}
    started = time.perf_counter()
    (delivery,) = send_alert(fast(webhook_url=receiver.url, deadline_s=5), EVENT, control_path)
    assert time.perf_counter() - started < 2.0
    assert not delivery.ok and delivery.attempts == 1 and delivery.status == 503
    assert "HTTP 503 Service Unavailable" in (delivery.error or "")
    assert "deadline of 5 s" in (delivery.error or "")


def test_a_redirect_is_not_followed_nor_retried(receiver: Receiver, control_path: Path) -> None:
    receiver.fail_first, receiver.fail_status = 100, 302
    receiver.fail_headers = {"Location": receiver.url + "/moved"}
    (delivery,) = send_alert(fast(webhook_url=receiver.url), EVENT, control_path)
    assert not delivery.ok and delivery.attempts == 1 and delivery.status == 302
    assert receiver.paths == ["/services/T000/B000/SECRETTOKEN"]


def test_the_command_receives_the_event_on_stdin_and_in_its_environment(
    tmp_path: Path, control_path: Path
) -> None:
    out = tmp_path / "received.json"
    script = (
        "import json, os, sys, pathlib; "
        "pathlib.Path(sys.argv[1]).write_text(json.dumps("
        "{'stdin': json.load(sys.stdin), 'env': json.loads(os.environ['STEADYCAST_EVENT'])}))"
    )
    config = fast(command=[sys.executable, "-c", script, str(out)])
    (delivery,) = send_alert(config, EVENT, control_path)
    assert delivery.ok and delivery.channel == "command" and delivery.status == 0
    received = json.loads(out.read_text())
    assert received["stdin"] == EVENT and received["env"] == EVENT


def test_a_failing_command_is_retried_and_recorded_with_its_error(control_path: Path) -> None:
    config = fast(command=[sys.executable, "-c", "import sys; sys.exit('no pager today')"])
    (delivery,) = send_alert(config, EVENT, control_path)
    assert not delivery.ok and delivery.attempts == 3 and delivery.status == 1
    assert delivery.error is not None and "exit code 1: no pager today" in delivery.error
    missing = fast(command=["/no/such/steadycast-pager"])
    (gone,) = send_alert(missing, EVENT, control_path)
    assert not gone.ok and gone.attempts == 1
    assert gone.error == "no such program: '/no/such/steadycast-pager'"


def test_events_below_the_minimum_severity_or_not_subscribed_are_not_sent(
    receiver: Receiver,
) -> None:
    config = fast(webhook_url=receiver.url, events=["incident.opened"])
    assert send_alert(config, {**EVENT, "severity": "info"}, None) == []
    assert send_alert(config, {**EVENT, "event": "incident.resolved"}, None) == []
    assert receiver.paths == []


def test_notify_alerts_on_open_and_resolve_and_summarises_a_storm(
    receiver: Receiver, control_path: Path
) -> None:
    findings = [
        Finding(f"check:flat_line:meters:m{i}", "check", "warning", f"m{i} stuck", "stuck")
        for i in range(3)
    ]
    config = fast(webhook_url=receiver.url, max_per_run=2)
    opened = record_findings(control_path, "meters", "run-1", findings, kinds=["check"])
    assert notify(config, opened, control_path, "meters", "run-1") == 1
    assert flush(10)
    (summary,) = receiver.bodies
    assert summary["count"] == 3 and summary["title"] == "3 incidents opened in pipeline 'meters'"
    resolved = record_findings(control_path, "meters", "run-2", findings[2:], kinds=["check"])
    notify(config, resolved, control_path, "meters", "run-2")
    assert flush(10)
    assert [b["event"] for b in receiver.bodies[1:]] == ["incident.resolved"] * 2
    assert receiver.bodies[1]["resolution"] == "cause gone: not seen in run run-2"
    assert ":white_check_mark:" in receiver.bodies[1]["text"]


def test_helpers_redact_and_build_bodies() -> None:
    assert redact_url("https://hooks.slack.com/services/T0/B0/XYZ") == (
        "https://hooks.slack.com/services/…"
    )
    assert redact_url("https://u:p@example.com:8443/?k=v") == "https://example.com:8443/…"
    assert redact_url("http://example.com") == "http://example.com"
    body = slack_body({**EVENT, "event": "incident.resolved", "resolution": "cause gone"})
    assert "_Resolution:_ cause gone" in body["blocks"][0]["text"]["text"]


def test_incident_event_carries_what_a_receiver_needs(control_path: Path) -> None:
    finding = Finding("held:meters", "held", "error", "pipeline 'meters' is held", "gate held")
    (incident,) = record_findings(control_path, "meters", "run-1", [finding], ["held"]).opened
    event = incident_event("incident.opened", incident)
    assert event["event"] == "incident.opened" and event["incident_id"] == incident.id
    assert event["fingerprint"] == "held:meters" and event["run_id"] == "run-1"
    assert json.loads(json.dumps(event)) == event


def _opened(control_path: Path, run_id: str, n: int = 1):  # type: ignore[no-untyped-def]
    findings = [
        Finding(f"check:flat_line:meters:m{i}", "check", "error", f"m{i} stuck", "stuck")
        for i in range(n)
    ]
    return record_findings(control_path, "meters", run_id, findings, kinds=["check"])


def _alerts_incidents(control_path: Path) -> list:  # type: ignore[type-arg]
    return [i for i in list_incidents(control_path, pipeline="meters") if i.kind == "alerts"]


def test_notify_returns_at_once_and_an_undeliverable_alert_opens_one_incident(
    tmp_path: Path, receiver: Receiver
) -> None:
    control_path = tmp_path / "control.sqlite"
    down = f"http://127.0.0.1:{closed_port()}/hooks/steadycast"
    slow = AlertsConfig.model_validate({"webhook_url": down, "retries": 2, "backoff_s": 0.5})
    started = time.perf_counter()
    assert notify(slow, _opened(control_path, "run-1", 2), control_path, "meters", "run-1") == 2
    assert time.perf_counter() - started < 0.5  # 2 alerts x (0.5 s + 1 s of backoff) queued
    assert flush(30)
    failed = [e for e in audit_entries(control_path) if e["action"] == "alert.failed"]
    assert len(failed) == 2 and {e["detail"]["attempts"] for e in failed} == {3}
    (incident,) = _alerts_incidents(control_path)
    assert incident.state == "open" and incident.occurrences == 2
    assert incident.title == "alerts undeliverable for pipeline 'meters'"
    assert "cannot connect" in (incident.detail or "")

    # The receiver is back: the next alert delivered resolves the incident.
    up = AlertsConfig.model_validate({"webhook_url": receiver.url})
    more = record_findings(
        control_path, "meters", "run-2", [Finding("held:meters", "held", "error", "held", "")], []
    )
    assert notify(up, more, control_path, "meters", "run-2") == 1
    assert flush(30)
    assert len(receiver.bodies) == 1
    (incident,) = _alerts_incidents(control_path)
    assert incident.state == "resolved"


def test_all_attempts_end_by_the_deadline(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{closed_port()}/hooks/steadycast"
    config = AlertsConfig.model_validate(
        {"webhook_url": down, "retries": 10, "backoff_s": 1.0, "deadline_s": 0.5}
    )
    started = time.perf_counter()
    (delivery,) = send_alert(config, EVENT, tmp_path / "control.sqlite")
    assert time.perf_counter() - started < 1.0
    assert not delivery.ok and delivery.attempts == 1
    assert "deadline of 0.5 s" in (delivery.error or "")


def test_with_a_base_url_each_alert_links_to_its_report_and_dashboard(
    tmp_path: Path, receiver: Receiver
) -> None:
    control_path = tmp_path / "control.sqlite"
    runlog.start_run(control_path, "meters-run-1", "meters", "local", "digest")
    config = AlertsConfig.model_validate(
        {"webhook_url": receiver.url, "base_url": "https://forecasts.example.com/"}
    )
    notify(config, _opened(control_path, "meters-run-1"), control_path, "meters", "meters-run-1")
    assert flush(30)
    (body,) = receiver.bodies
    report = "https://forecasts.example.com/api/v1/runs/meters-run-1/report"
    dashboard = "https://forecasts.example.com/#pipeline=meters"
    assert body["links"] == {"report": report, "dashboard": dashboard}
    text = body["blocks"][0]["text"]["text"]
    assert f"<{report}|Run report>" in text and f"<{dashboard}|Dashboard>" in text


def test_without_a_base_url_each_alert_names_the_commands_to_paste(
    tmp_path: Path, receiver: Receiver
) -> None:
    control_path = tmp_path / "my ws" / "control.sqlite"
    control_path.parent.mkdir()
    runlog.start_run(control_path, "meters-run-1", "meters", "local", "digest")
    config = AlertsConfig.model_validate({"webhook_url": receiver.url})
    notify(config, _opened(control_path, "meters-run-1"), control_path, "meters", "meters-run-1")
    # A monitor tick is not a run: its alert has no report to point at.
    notify(config, _opened(control_path, "monitor-1", 2), control_path, "meters", "monitor-1")
    assert flush(30)
    first, second = receiver.bodies
    root = str(control_path.parent)
    assert shlex.split(first["commands"]["report"]) == [
        "steadycast", "report", "meters-run-1", "-o", "report-meters-run-1.html", "-w", root
    ]  # fmt: skip
    assert shlex.split(first["commands"]["status"]) == [
        "steadycast",
        "status",
        "meters",
        "-w",
        root,
    ]
    assert "Run report: `steadycast report meters-run-1" in first["blocks"][0]["text"]["text"]
    assert "report" not in second["commands"] and "incidents" in second["commands"]
