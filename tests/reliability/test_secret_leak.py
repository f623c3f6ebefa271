"""A canary secret everywhere a secret goes, errors forced everywhere, and a search for it.

The canary (``CANARY-<random>``) is the API bearer token (environment and the token file the
workspace config names), the secret part of alert webhook URLs (the environment variable that
``webhook_url_env`` names; and, sent straight to the alert channel, URLs with it in the path,
the query, the user info, a malformed port and host), and a plain environment variable of every
process. Then, with the real CLI and a real ``steadycast serve``:

- a run whose plugins crash and return garbage: held by its gate, an incident opens, the alert
  webhooks (closed ports on 127.0.0.1) fail with retries;
- a run that fails (no data), a pipeline whose config is invalid, a server that refuses a
  world-readable token file;
- API requests without a token, with a wrong one, and with the right one (approve, acknowledge);
- ``steadycast report`` of each run, ``status``, ``runs`` and ``incidents``.

The promise: the canary is in none of the logs (JSON and text, stderr), stdout, reports, API
responses (bodies and headers), the audit log, the control database, the store or any other
file the workspace holds, except the configuration files it was written into.

A webhook URL written into the pipeline file itself is recorded verbatim with each run today
(``test_a_webhook_url_in_the_pipeline_file_stays_out_of_the_run_record``, expected to fail).
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from steadycast.config import AlertsConfig
from steadycast.ops.alerts import incident_event, send_alert
from steadycast.ops.incidents import list_incidents
from steadycast.ops.logging import JsonFormatter
from steadycast.pipeline.run import run_pipeline
from steadycast.storage.control import audit_entries
from steadycast.storage.runlog import get_run
from steadycast.workspace import Workspace
from tests.integration.test_plugins_in_run import planted_workspace
from tests.pipelines import pipeline_toml
from tests.reliability.conftest import LONG, Record
from tests.reliability.test_api_security import send

CANARY = f"CANARY-{secrets.token_hex(12)}"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def webhook_urls(port: int) -> list[str]:
    """The canary in every part of a webhook URL that can hold a secret."""
    return [
        f"http://127.0.0.1:{port}/hooks/{CANARY}",
        f"https://127.0.0.1:{port}/{CANARY}",
        f"http://127.0.0.1:{port}/services/T0/{CANARY}?x=1",
        f"http://hook:{CANARY}@127.0.0.1:{port}/x",
        f"http://127.0.0.1:{port}/x?token={CANARY}#frag",
        f"http://127.0.0.1:{CANARY}/x",  # a malformed port
        f"http://[{CANARY}]/x",  # a malformed host
    ]


ALERTS = """
[alerts]
webhook_url_env = "STEADYCAST_TEST_WEBHOOK"
retries = 1
backoff_s = 0
timeout_s = 2
min_severity = "info"
"""


@contextmanager
def serving(
    ws: Workspace, env: dict[str, str], log: Path, log_format: str = "json"
) -> Iterator[int]:
    """``steadycast serve`` in a child process, its stdout and stderr appended to ``log``."""
    port = closed_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "steadycast.cli", "--log-format", log_format),
                *("--log-level", "DEBUG", "serve", "--host", "127.0.0.1", "--port", str(port)),
                *("-w", str(ws.root)),
            ],
            stdout=out,
            stderr=out,
            env=env,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"steadycast serve ended: {log.read_text()[-1000:]}")
            try:
                if send(port, "GET", b"/healthz", {}, b"").status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield port
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steadycast.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def dump_sqlite(path: Path) -> str:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(
            f"{t}: {row!r}" for t in tables for row in con.execute(f'SELECT * FROM "{t}"')
        )
    finally:
        con.close()


def dump_duckdb(path: Path) -> str:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
            ).fetchall()
        ]
        return "\n".join(
            f"{t}: {row!r}"
            for t in tables
            for row in con.execute(f'SELECT * FROM "{t}"').fetchall()
        )
    finally:
        con.close()


def test_the_canary_never_leaks(tmp_path: Path, figure: Record) -> None:
    port = closed_port()
    candidates = ["ChaosSegfault", "ChaosNaN"]
    if LONG:  # all bad, so the run is held
        candidates += ["ChaosRaise", "ChaosHang", "ChaosWrongIds", "ChaosExit"]
    ws = planted_workspace(tmp_path, candidates, series=2, timeout_s=2.0)
    alerts = ALERTS
    with (ws.pipelines_dir / "p.toml").open("a") as toml:
        toml.write(alerts)
    # A pipeline without data (its run fails) and one whose config is invalid.
    base = (ws.pipelines_dir / "p.toml").read_text().split("[models]")[0]
    (ws.pipelines_dir / "empty.toml").write_text(base + alerts)
    (ws.pipelines_dir / "broken.toml").write_text(
        base + alerts.replace("retries = 1", 'retries = "many"')
    )
    token_file = ws.root / "token.txt"
    token_file.write_text(CANARY + "\n")
    token_file.chmod(0o600)
    settings = ws.settings_file.read_text()
    line = 'token_file = "token.txt"'
    if "[server]" in settings:
        settings = settings.replace("[server]", f"[server]\n{line}", 1)
    else:
        settings += f"\n[server]\n{line}\n"
    ws.settings_file.write_text(settings)
    planted = {ws.pipelines_dir / n for n in ("p.toml", "empty.toml", "broken.toml")}
    planted |= {token_file, ws.settings_file}

    env = {
        **os.environ,
        "STEADYCAST_API_TOKEN": CANARY,
        "STEADYCAST_TEST_WEBHOOK": f"http://127.0.0.1:{port}/env/{CANARY}",
        "STEADYCAST_CANARY_ENV": CANARY,
        "STEADYCAST_WORKSPACE": str(ws.root),
    }
    places: dict[str, str] = {}  # place -> its text

    def keep(place: str, text: str | bytes) -> None:
        places[place] = text.decode("utf-8", "replace") if isinstance(text, bytes) else text

    # Runs: held (crashing and lying plugins, failing alerts), failed (no data), invalid config.
    held = cli("--log-format", "json", "--log-level", "DEBUG", "run", "p", "--json", env=env)
    keep("run p: stdout", held.stdout)
    keep("run p: stderr (JSON logs)", held.stderr)
    assert held.returncode == 3, held.stderr[-2000:]
    held_id = json.loads(held.stdout)["run_id"]
    failed = cli("--log-level", "DEBUG", "run", "empty", "--json", env=env)
    keep("run empty: stdout", failed.stdout)
    keep("run empty: stderr (text logs)", failed.stderr)
    assert failed.returncode == 1, failed.stderr[-2000:]
    failed_id = json.loads(failed.stdout)["run_id"]
    broken = cli("--log-format", "json", "run", "broken", env=env)
    keep("run broken: stderr", broken.stderr + broken.stdout)
    assert broken.returncode == 2 and "retries" in broken.stderr, broken.stderr[-2000:]

    # The alert channel itself with every kind of secret URL, in this process (the CLI takes
    # one from the environment), its logs as JSON lines.
    incident = next(i for i in list_incidents(ws.control_path) if i.state == "open")
    config = AlertsConfig(
        webhook_url=webhook_urls(port), retries=1, backoff_s=0, timeout_s=2, min_severity="info"
    )
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        deliveries = send_alert(
            config, incident_event("incident.opened", incident), ws.control_path
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    keep("send_alert: logs (JSON)", stream.getvalue())
    keep("send_alert: deliveries", repr(deliveries))
    assert len(deliveries) == len(webhook_urls(port)) and not any(d.ok for d in deliveries)

    # Every alert failed, and was recorded as failed (the attempt is what we check for leaks).
    failures = [
        e for e in audit_entries(ws.control_path, None, 1000) if e["action"] == "alert.failed"
    ]
    assert len(failures) >= len(webhook_urls(port)) + 1, failures

    # Reports and listings.
    for run_id in (held_id, failed_id):
        out = tmp_path / f"report-{run_id}.html"
        report = cli("report", run_id, "-o", str(out), env=env)
        keep(f"report {run_id}: stderr", report.stderr + report.stdout)
        if out.exists():
            keep(f"report {run_id}: HTML", out.read_bytes())
    for args in (["status", "--json"], ["runs", "--json"], ["incidents", "--json"]):
        done = cli(*args, env=env)
        keep(f"{args[0]}: output", done.stdout + done.stderr)

    # The API: refused writes, accepted writes, errors and every read.
    server_log = tmp_path / "serve.log"
    writes = [
        f"/api/v1/runs/{held_id}/approve",
        f"/api/v1/incidents/{incident.id}/acknowledge",
        "/api/v1/pipelines/p/rollback",
    ]
    reads = [
        "/healthz",
        "/metrics",
        "/api/v1/pipelines",
        "/api/v1/pipelines/p/forecast",
        "/api/v1/pipelines/p/releases",
        "/api/v1/pipelines/p/quality",
        "/api/v1/pipelines/p/series",
        "/api/v1/pipelines/p/series/s0",
        f"/api/v1/runs/{held_id}",
        f"/api/v1/runs/{failed_id}",
        "/api/v1/runs/no-such-run",
        "/api/v1/incidents",
        "/api/v1/audit?limit=1000",
        "/api/v1/hogs",
        "/api/v1/openapi.json",
        "/api/v1/pipelines/broken/forecast",
        "/",
    ]
    body = json.dumps({"reason": "approved by the secret-leak test", "note": "on it"}).encode()
    responses: list[str] = []
    with serving(ws, env, server_log) as api_port:
        for path in writes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
                headers = {**headers, "Content-Type": "application/json"}
                answer = send(api_port, "POST", path.encode(), headers, body)
                assert answer.status in (401, 403), (path, answer.status)
                responses.append(f"POST {path} -> {answer.status} {answer.headers} {answer.body!r}")
        good = {"Authorization": f"Bearer {CANARY}", "Content-Type": "application/json"}
        for path in writes:
            answer = send(api_port, "POST", path.encode(), good, body)
            responses.append(f"POST {path} -> {answer.status} {answer.headers} {answer.body!r}")
        approved = [r for r in responses if "/approve -> 200" in r]
        assert approved, responses[-3:]
        for path in reads:
            answer = send(api_port, "GET", path.encode(), {}, b"")
            assert answer.status < 500, (path, answer.status, answer.body[:300])
            responses.append(f"GET {path} -> {answer.status} {answer.headers} {answer.body!r}")
    for i, text in enumerate(responses):
        keep(f"API response #{i}: {text[:60]}", text)

    # A token file every user can read: the server must refuse it without quoting it.
    token_file.chmod(0o644)
    no_env = {k: v for k, v in env.items() if k != "STEADYCAST_API_TOKEN"}
    refused = cli("serve", "--port", str(closed_port()), env=no_env)
    keep("serve with a world-readable token file: output", refused.stderr + refused.stdout)
    assert refused.returncode == 2 and "chmod 600" in refused.stderr, refused.stderr
    token_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    keep("serve: log (JSON)", server_log.read_bytes())

    # Everything the workspace holds, as bytes, and its databases as rows (DuckDB compresses
    # strings on disk, so a byte search alone could miss one).
    for path in sorted(ws.root.rglob("*")):
        if path.is_file() and path not in planted:
            keep(f"file {path.relative_to(ws.root)}", path.read_bytes())
    keep("control database rows", dump_sqlite(ws.control_path))
    keep("store rows", dump_duckdb(ws.store_path))

    leaks = sorted(place for place, text in places.items() if CANARY in text)
    figure(
        "secret-leak",
        violations=len(leaks),
        value=f"{len(leaks)} leaks in {len(places)} places searched",
        places_searched=len(places),
        leaks=leaks,
        alert_failures=len(failures),
        api_responses=len(responses),
    )
    assert not leaks, leaks


def test_a_webhook_url_in_the_pipeline_file_stays_out_of_the_run_record(tmp_path: Path) -> None:
    ws = planted_workspace(tmp_path, ["Naive"], series=1)
    with (ws.pipelines_dir / "p.toml").open("a") as toml:
        toml.write(
            f'[alerts]\nwebhook_url = "http://127.0.0.1:{closed_port()}/hooks/T0/{CANARY}"\n'
        )
    result = run_pipeline(ws, "p")
    assert result.status in ("published", "held"), result.error
    assert CANARY not in json.dumps(get_run(ws.control_path, result.run_id), default=str)
    assert CANARY not in dump_sqlite(ws.control_path)


def test_a_malformed_webhook_url_is_not_quoted_in_the_config_error(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "p.toml").write_text(
        pipeline_toml(
            id_column="id",
            time_column="t",
            value_column="v",
            horizon=2,
            season_lengths=None,
            min_value=None,
            extra=f'[alerts]\nwebhook_url = "hooks/{CANARY}"\n',
        )
    )
    done = cli("run", "p", "-w", str(ws.root), env=dict(os.environ))
    assert done.returncode == 2 and "webhook" in done.stderr, done.stderr
    assert CANARY not in done.stderr + done.stdout
