"""config-alerts: a pipeline file with a typo reaches a person, through the workspace's channels.

The promise: whichever command finds a pipeline file that does not load (``run``, ``monitor``,
``status``, the server) opens or updates one ``config`` incident for that file and alerts
through the workspace-level ``[alerts]`` of ``steadycast.toml``; ``monitor`` still watches the
other pipelines and exits 2 at the end; ``status`` and the API list the pipeline as broken; the
next command that loads the fixed file resolves the incident, and that is alerted too. A failed
run of a pipeline without ``[alerts]`` of its own alerts through the same workspace channels.

Everything goes through the CLI in a subprocess, as cron runs it; the webhook is a small HTTP
server of the test on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from steadycast.ops.incidents import list_incidents
from steadycast.server import create_app
from steadycast.workspace import Workspace
from tests.pipelines import pipeline_toml
from tests.reliability.conftest import Record
from tests.reliability.test_failed_run_alerts import Webhook, webhook
from tests.server_workspace import running

__all__ = ["webhook"]  # the fixture, shared with the failed-run test

GOOD = pipeline_toml()
TYPO = pipeline_toml().replace("horizon = 12", 'horizon = "12"')


def cli(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEADYCAST_")}
    cmd = [sys.executable, "-m", "steadycast.cli", *args, "-w", str(ws.root)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def config_events(hook: Webhook, event: str) -> list[dict[str, object]]:
    return [e for e in hook.events if e["event"] == event and e["kind"] == "config"]


def test_a_broken_pipeline_file_opens_one_incident_alerts_and_resolves(
    tmp_path: Path, webhook: Webhook, figure: Record
) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "example.toml").unlink()
    with ws.settings_file.open("a", encoding="utf-8") as fh:
        fh.write(f'\n[alerts]\nwebhook_url = "{webhook.url}"\nretries = 0\n')
    (ws.pipelines_dir / "aaa.toml").write_text(TYPO, encoding="utf-8")
    (ws.pipelines_dir / "meters.toml").write_text(GOOD, encoding="utf-8")

    # run: exit 2 naming the file and the key, one incident, one alert through the workspace.
    ran = cli(ws, "run", "aaa")
    assert ran.returncode == 2, ran.stderr
    assert "pipelines/aaa.toml: series.horizon" in ran.stderr and "Traceback" not in ran.stderr
    (incident,) = list_incidents(ws.control_path, pipeline="aaa")
    assert (incident.kind, incident.state) == ("config", "open")
    (alert,) = config_events(webhook, "incident.opened")
    assert alert["pipeline"] == "aaa" and alert["incident_id"] == incident.id
    assert "series.horizon" in str(alert["detail"])

    # monitor: goes on past the broken file (the first in order), watches the others, exits 2.
    watched = cli(ws, "monitor", "--json")
    assert watched.returncode == 2, watched.stderr
    doc = {p["pipeline"]: p for p in json.loads(watched.stdout)["pipelines"]}
    assert "series.horizon" in doc["aaa"]["error"]
    assert doc["meters"]["error"] is None and doc["meters"]["sla"]["state"]
    assert "steadycast validate" in watched.stderr

    # status and the API: broken, with the error; still one incident (seen again, not reopened).
    status = cli(ws, "status", "--json")
    assert status.returncode == 0, status.stderr
    shown = {p["pipeline"]: p for p in json.loads(status.stdout)["pipelines"]}
    assert shown["aaa"]["broken"] is True and "series.horizon" in shown["aaa"]["config_error"]
    assert shown["meters"]["broken"] is False
    text = cli(ws, "status", "aaa")
    assert "BROKEN:" in text.stdout and "series.horizon" in text.stdout, text.stdout
    with running(create_app(ws)) as base:
        listed = httpx.get(f"{base}/api/v1/pipelines", timeout=30).json()["pipelines"]
    api = {p["name"]: p for p in listed}
    assert api["aaa"]["broken"] is True and "series.horizon" in api["aaa"]["config_error"]
    assert api["meters"]["broken"] is False
    (same,) = list_incidents(ws.control_path, pipeline="aaa")
    assert same.id == incident.id and same.occurrences >= 4
    assert len(config_events(webhook, "incident.opened")) == 1

    # validate names the problem; fixing the file and loading it again resolves the incident.
    checked = cli(ws, "validate", "--json")
    assert checked.returncode == 2, checked.stderr
    assert json.loads(checked.stdout)["problems"][0]["file"] == "pipelines/aaa.toml"
    (ws.pipelines_dir / "aaa.toml").write_text(GOOD, encoding="utf-8")
    fixed = cli(ws, "validate")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    (resolved,) = list_incidents(ws.control_path, pipeline="aaa")
    assert resolved.state == "resolved"
    (closing,) = config_events(webhook, "incident.resolved")
    assert closing["incident_id"] == incident.id

    # A failed run (no data yet) of a pipeline without [alerts] of its own: the workspace's
    # channels carry it too.
    failed = cli(ws, "run", "meters")
    assert failed.returncode == 1, failed.stderr
    (opened,) = [
        e for e in webhook.events if e["event"] == "incident.opened" and e["kind"] == "failed"
    ]
    assert opened["pipeline"] == "meters"

    figure(
        "config-alerts",
        violations=0,
        value="broken file: 1 incident, alerted once, shown broken by status/API, resolved on fix",
        alerts=len(webhook.events),
    )
