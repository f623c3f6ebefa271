"""A run as a scheduler sees it: no terminal, its log captured, alert receivers that may be down.

The promises: without a terminal, ``steadycast run`` logs each stage's start and end and its
partition progress (done/total, rate, elapsed) on stderr, as JSON lines with ``--log-format
json``; an alert receiver that refuses connections costs the run no more than a second (alerts
go out from a background queue), yet the failure is still recorded before the command exits:
in the audit log and as one "alerts undeliverable" incident.

Every run is the real CLI in a subprocess with pipes, as cron runs it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from steadycast.ingestion.batch import ingest
from steadycast.ops.incidents import list_incidents
from steadycast.storage.control import audit_entries
from steadycast.workspace import Workspace
from tests.integration.test_run import PIPELINE, fleet_csv


def cli(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEADYCAST_")}
    cmd = [sys.executable, "-m", "steadycast.cli", *args, "-w", str(ws.root)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_run_without_a_terminal_logs_its_stages_and_partitions(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE)
    ingest(ws, "meters", [fleet_csv(tmp_path / "fleet.csv", series=20)])

    text = cli(ws, "run", "meters")
    assert text.returncode == 0, text.stderr
    lines = text.stderr.splitlines()
    for stage in ("snapshot", "check", "forecast", "gate", "publish"):
        assert any(f"stage {stage} started" in line for line in lines), text.stderr
        assert any(re.search(f"stage {stage} finished in [0-9.]+ s", x) for x in lines), lines
    progress = [line for line in lines if re.search(r"forecast: \d+/\d+ partitions", line)]
    assert progress, text.stderr
    assert re.search(r"(\d+)/\1 partitions \(100%\), [0-9.]+ partitions/s, elapsed", progress[-1])

    # The same data again: forced, or it would be skipped before its first stage.
    as_json = cli(ws, "--log-format", "json", "run", "meters", "--force", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["status"] == "published"  # stdout stays the result
    records = [json.loads(line) for line in as_json.stderr.splitlines() if line.strip()]
    finished = [r for r in records if r.get("event") == "finished"]
    assert [r["stage"] for r in finished] == ["snapshot", "check", "forecast", "gate", "publish"]
    assert all(r["run_id"] and r["pipeline"] == "meters" for r in finished)
    (last, *_) = [r for r in reversed(records) if "done" in r]
    assert last["done"] == last["total"] >= 1 and last["rate_per_s"] > 0 and last["elapsed_s"] > 0

    quiet = cli(ws, "--log-level", "WARNING", "run", "meters", "--force")  # asked for quiet
    assert quiet.returncode == 0 and "stage" not in quiet.stderr, quiet.stderr


def _failed_run_tail(tmp_path: Path, name: str, alerts: str) -> tuple[Workspace, float]:
    """Seconds from a failed run's last stage line on stderr to the command's exit.

    The run fails (no data yet), opens a ``failed`` incident and alerts. Everything an alert
    costs the command (sent in the run, or waited for at exit) falls in this tail, while the
    start-up and the stages before it, whose time a busy machine stretches by seconds, do not.
    """
    ws = Workspace.init(tmp_path / name)
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE + alerts)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEADYCAST_")}
    cmd = [sys.executable, "-m", "steadycast.cli", "run", "meters", "-w", str(ws.root)]
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env) as proc:
        assert proc.stderr is not None
        last_stage = time.perf_counter()
        for line in proc.stderr:
            if b"steadycast.progress" in line:
                last_stage = time.perf_counter()
        code = proc.wait(timeout=600)
    tail = time.perf_counter() - last_stage
    assert code == 1
    return ws, tail


def test_an_unreachable_webhook_does_not_hold_the_run_up_and_opens_one_incident(
    tmp_path: Path,
) -> None:
    # The default retries and backoff: 3 more tries, waiting 1 s, 2 s, 4 s in between.
    hook = f'\n[alerts]\nwebhook_url = "http://127.0.0.1:{closed_port()}/hooks/steadycast"\n'
    plain, with_hook = [], []
    for n in range(2):  # the quicker of two of each: the machine is shared
        plain.append(_failed_run_tail(tmp_path, f"plain{n}", "")[1])
        ws, tail = _failed_run_tail(tmp_path, f"hook{n}", hook)
        with_hook.append(tail)
    assert min(with_hook) - min(plain) < 1.0, (plain, with_hook)

    # Before it exited, the command still tried every attempt and recorded the failure.
    failed = [e for e in audit_entries(ws.control_path) if e["action"] == "alert.failed"]
    assert failed and failed[0]["detail"]["attempts"] == 4, failed
    assert "cannot connect" in (failed[0]["reason"] or "")
    (incident,) = [i for i in list_incidents(ws.control_path) if i.kind == "alerts"]
    assert incident.state == "open" and incident.pipeline == "meters"
    assert incident.title == "alerts undeliverable for pipeline 'meters'"
    assert "pipelines/meters.toml" in (incident.detail or "")
