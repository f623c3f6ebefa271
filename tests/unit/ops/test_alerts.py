"""Alerts against a real HTTP server on 127.0.0.1 and a real command: delivered, retried,
recorded when they fail, and never raising."""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from steadycast.config import AlertsConfig
from steadycast.ops.alerts import incident_event, notify, redact_url, send_alert, slack_body
from steadycast.ops.incidents import Finding, record_findings
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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            state.paths.append(self.path)
            if len(state.paths) <= state.fail_first:
                self.send_response(state.fail_status)
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
    notify(config, opened, control_path, "meters", "run-1")
    (summary,) = receiver.bodies
    assert summary["count"] == 3 and summary["title"] == "3 incidents opened in pipeline 'meters'"
    resolved = record_findings(control_path, "meters", "run-2", findings[2:], kinds=["check"])
    notify(config, resolved, control_path, "meters", "run-2")
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
