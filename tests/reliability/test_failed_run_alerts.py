"""failed-run-alerts: a run that fails reaches a person, in one line and one alert.

The promise: whatever makes a run fail (no data yet, an internal error), ``steadycast run``
prints one line on stderr and no traceback (unless ``--log-level DEBUG`` asks for it), exits 1,
records the error (the traceback too, for an internal error), opens one ``failed`` incident for
the pipeline (a second failure updates it) and alerts through the pipeline's webhook; the next
run that finishes resolves the incident, and that is alerted too.

Everything goes through the CLI in a subprocess, as cron runs it; the webhook is a small HTTP
server of the test on 127.0.0.1. The internal error is injected with the product's fault
injection (``STEADYCAST_FAILPOINT=raise:stage:check``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from steadycast.ingestion.batch import ingest
from steadycast.ops.incidents import list_incidents
from steadycast.storage.control import connect
from steadycast.workspace import Workspace
from tests.integration.test_run import PIPELINE, fleet_csv
from tests.reliability.conftest import Record


class Webhook:
    """What a webhook receiver got: one JSON body per POST."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.url = ""

    def opened(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "incident.opened" and e["kind"] == kind]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    got = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.events.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    got.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/steadycast"
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()


def pipeline_with_alerts(url: str) -> str:
    return PIPELINE + f'\n[alerts]\nwebhook_url = "{url}"\nretries = 0\n'


def run(
    ws: Workspace, pipeline: str, *extra: str, fault: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STEADYCAST_FAILPOINT"}
    if fault:
        env["STEADYCAST_FAILPOINT"] = fault
    cmd = [sys.executable, "-m", "steadycast.cli", *extra, "run", pipeline, "-w", str(ws.root)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def error_lines(stderr: str) -> list[str]:
    """The lines the run itself wrote on stderr (a library's warning about an installed plugin
    is not the run's)."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def live_failed(ws: Workspace, pipeline: str) -> list[Any]:
    return [
        i
        for i in list_incidents(ws.control_path, pipeline=pipeline)
        if i.kind == "failed" and i.state != "resolved"
    ]


def test_a_failed_run_prints_one_line_opens_one_incident_and_alerts(
    tmp_path: Path, webhook: Webhook, figure: Record
) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(pipeline_with_alerts(webhook.url))
    (ws.pipelines_dir / "empty.toml").write_text(pipeline_with_alerts(webhook.url))
    ingest(ws, "meters", [fleet_csv(tmp_path / "fleet.csv")])

    # An internal error (a bug, as the run sees it) in the checks.
    broken = run(ws, "meters", fault="raise:stage:check")
    assert broken.returncode == 1, broken.stderr
    assert "Traceback" not in broken.stderr, broken.stderr
    (line,) = error_lines(broken.stderr)
    assert "internal error: RuntimeError" in line and "--log-level DEBUG" in line, line
    with connect(ws.control_path) as con:
        record = con.execute(
            "SELECT status, error, detail FROM runs WHERE pipeline = 'meters'"
        ).fetchone()
    assert record["status"] == "failed" and record["error"].startswith("internal error")
    assert "Traceback" in json.loads(record["detail"])["traceback"]
    (incident,) = live_failed(ws, "meters")
    assert "internal error: RuntimeError" in incident.detail
    (alert,) = webhook.opened("failed")
    assert alert["pipeline"] == "meters" and alert["incident_id"] == incident.id
    assert "internal error" in alert["detail"], alert

    # Failing again updates the same incident (one incident, not one per run); the traceback
    # is printed when asked for.
    again = run(ws, "meters", "--log-level", "DEBUG", fault="raise:stage:check")
    assert again.returncode == 1 and "Traceback" in again.stderr, again.stderr
    (same,) = live_failed(ws, "meters")
    assert same.id == incident.id and same.occurrences == 2

    # The next run that finishes resolves it, and says so.
    fixed = run(ws, "meters")
    assert fixed.returncode == 0, fixed.stderr
    assert not live_failed(ws, "meters")
    resolved = [e for e in webhook.events if e["event"] == "incident.resolved"]
    assert [e["incident_id"] for e in resolved if e["kind"] == "failed"] == [incident.id]

    # No data yet: a failure of another kind, on another pipeline, alerts the same way.
    empty = run(ws, "empty")
    assert empty.returncode == 1 and "Traceback" not in empty.stderr, empty.stderr
    (line,) = error_lines(empty.stderr)
    assert "no stored observations" in line, line
    (incident,) = live_failed(ws, "empty")
    assert [a["pipeline"] for a in webhook.opened("failed")] == ["meters", "empty"]

    figure(
        "failed-run-alerts",
        violations=0,
        value="2 kinds of failure: 1 stderr line each, 1 incident per pipeline, alerted and resolved",
        alerts=len(webhook.events),
    )
