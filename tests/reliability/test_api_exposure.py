"""What a real ``steadycast serve`` must not give away: tokens, internals, a shared token file.

- A token sent where it does not belong (the query string under any credential name and case,
  a path segment, a parameter value) is refused or treated as a plain value, and never appears
  in the server's stdout or stderr (text and JSON logs) or in any file of the workspace.
- Every GET route of the served OpenAPI document, and the dashboard, answers a reader without
  a token with no filesystem path of the workspace, no host name, no pid of the process that
  made the run, and no OS user name; the audit log needs the token.
- A token file that its group or other users can read or write is refused at start-up (exit 2,
  naming the file, its mode and ``chmod 600``); 0600 and 0400 are accepted.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from steadycast.ops.incidents import acknowledge, raise_incident
from steadycast.server.exposure import ACTOR_KEYS
from steadycast.server.settings import TOKEN_ENV, load_settings
from steadycast.storage import store
from steadycast.workspace import Workspace
from tests.observability_workspace import real_run_workspace
from tests.reliability.test_api_security import send
from tests.reliability.test_secret_leak import closed_port, serving

PIPELINE = "meters"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, str]:
    """A workspace with a real published run (made in this process: its pid is known)."""
    return real_run_workspace(tmp_path_factory.mktemp("exposure"))


def _env(ws: Workspace, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    env["STEADYCAST_WORKSPACE"] = str(ws.root)
    if token is not None:
        env[TOKEN_ENV] = token
    return env


# ------------------------------------------------------------------ tokens never reach a log


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_token_in_the_url_is_refused_and_never_logged(
    workspace: tuple[Workspace, str], tmp_path: Path, log_format: str
) -> None:
    ws, run_id = workspace
    token = f"TOKEN-{secrets.token_hex(12)}"
    log = tmp_path / "serve.log"
    in_url: list[tuple[str, str, int, bytes]] = []
    with serving(ws, _env(ws, token), log, log_format) as port:
        for name in ("token", "access_token", "ACCESS_TOKEN", "Token", "api_key", "apikey"):
            for path in ("/api/v1/pipelines", f"/api/v1/runs/{run_id}", "/"):
                answer = send(port, "GET", f"{path}?{name}={token}".encode(), {}, b"")
                in_url.append((name, path, answer.status, answer.body))
        # A write with the token in the URL is refused too.
        approve = f"/api/v1/runs/{run_id}/approve?access_token={token}".encode()
        body = json.dumps({"reason": "in the url"}).encode()
        answer = send(port, "POST", approve, {"Content-Type": "application/json"}, body)
        in_url.append(("access_token", "approve", answer.status, answer.body))
        # The token where an id or a value belongs: looked up as a plain (unknown) name.
        for target in (
            f"/api/v1/runs/{token}",
            f"/api/v1/pipelines/{PIPELINE}/forecast?series={token}",
            f"/api/v1/pipelines/{PIPELINE}/series?prefix={token}",
            f"/api/v1/incidents?pipeline={token}",
        ):
            assert send(port, "GET", target.encode(), {}, b"").status < 500, target
        # In headers no log records, and a valid use: none of it may be logged either.
        auth = {"Authorization": f"Bearer {token}"}
        assert send(port, "GET", b"/api/v1/audit?limit=5", auth, b"").status == 200
        send(port, "GET", b"/api/v1/pipelines", {"X-Api-Token": token}, b"")
    text = log.read_text(encoding="utf-8", errors="replace")
    places = {"serve stdout+stderr": text}
    for path in ws.root.rglob("*"):
        if path.is_file() and path.suffix in ("", ".log", ".json", ".txt", ".toml", ".jsonl"):
            places[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    con = sqlite3.connect(f"file:{ws.control_path}?mode=ro", uri=True)
    try:
        places["audit rows"] = repr(con.execute("SELECT * FROM audit").fetchall())
    finally:
        con.close()
    leaks = [place for place, content in places.items() if token in content]
    assert not leaks, leaks
    # Every request is still in the access log, with the secret replaced.
    assert "[redacted]" in text and "access_token=" in text.lower(), text[-2000:]
    wrong = [(n, p, status) for n, p, status, _ in in_url if status != 400]
    assert not wrong, wrong
    assert all(b"Authorization: Bearer" in body for *_, body in in_url)


# ------------------------------------------------------------------ open reads show no internals


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(:path)?\}", lambda m: values[m.group(1)], path)


def _actors(doc: Any) -> list[str]:
    found: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ACTOR_KEYS and isinstance(value, str):
                found.append(value)
            found += _actors(value)
    elif isinstance(doc, list):
        for value in doc:
            found += _actors(value)
    return found


def _without_bundled_scripts(text: str) -> str:
    """``text`` without inlined libraries (scripts over 100 KB, such as plotly.js in the report):
    their numeric tables hold every five-digit number, so any pid would be "found" there."""
    scripts = re.finditer(r"<script[^>]*>(.*?)</script>", text, flags=re.S)
    for script in [m for m in scripts if len(m.group(1)) > 100_000][::-1]:
        text = text[: script.start()] + text[script.end() :]
    return text


def test_open_reads_show_no_paths_pids_hosts_or_users(
    workspace: tuple[Workspace, str], tmp_path: Path
) -> None:
    ws, run_id = workspace
    pid = os.getpid()  # the run was made by this process, which recorded its pid and host
    con = sqlite3.connect(f"file:{ws.control_path}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT pid, host FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    finally:
        con.close()
    assert row == (pid, socket.gethostname()), row  # the records do hold them
    # An incident whose detail quotes a workspace file (as an error message would), and which a
    # person acknowledged on the machine: its actor is their OS account.
    incident, _ = raise_incident(
        ws.control_path,
        f"check:freshness:{PIPELINE}:m0",
        PIPELINE,
        "check",
        "warning",
        "freshness failed for series 'm0'",
        f"the store {ws.store_path} on {socket.gethostname()} was busy",
        run_id,
    )
    acknowledge(ws.control_path, incident.id)
    user = getpass.getuser()
    host = socket.gethostname()
    values = {
        "pipeline": PIPELINE,
        "run_id": run_id,
        "series_id": "m0",
        "incident_id": str(incident.id),
    }
    answers: dict[str, bytes] = {}
    statuses: dict[str, int] = {}
    with serving(ws, _env(ws, "a-configured-token"), tmp_path / "serve.log", "text") as port:
        schema = json.loads(send(port, "GET", b"/api/v1/openapi.json", {}, b"").body)
        gets = [path for path, ops in schema["paths"].items() if "get" in ops]
        targets = [_fill(path, values) for path in gets] + ["/api/v1/openapi.json", "/"]
        for target in targets:
            answer = send(port, "GET", target.encode(), {}, b"")
            answers[target] = answer.body
            statuses[target] = answer.status
        # With the store held by another process, the answers say so without naming its path.
        with store.writing(ws.store_path):
            for target in (f"/api/v1/pipelines/{PIPELINE}/series/m0", "/metrics"):
                answer = send(port, "GET", target.encode(), {}, b"")
                answers[f"{target} (store busy)"] = answer.body
                statuses[f"{target} (store busy)"] = answer.status
    assert len(answers) >= 12, sorted(answers)
    host_word = re.compile(rf"(?<![\w.-]){re.escape(host)}(?![\w-])")
    pid_word = re.compile(rf"(?<![\w.:-]){pid}(?![\w.:-])")  # not in a time or a float
    problems = []
    for target, body in answers.items():
        text = body.decode("utf-8", "replace")
        if str(ws.root) in text or str(ws.root.parent) in text:
            problems.append(f"{target}: the workspace path")
        if host_word.search(text):
            problems.append(f"{target}: the host name {host!r}")
        if pid_word.search(_without_bundled_scripts(text)):
            problems.append(f"{target}: the pid {pid}")
        if '"pid"' in text or '"host"' in text:
            problems.append(f"{target}: a pid or host field")
        is_json = target.startswith("/api/") and body[:1] in (b"{", b"[")
        if is_json and user in _actors(json.loads(body)):
            problems.append(f"{target}: the OS user {user!r}")
    assert not problems, problems
    # The audit log names who did what on the machine: it needs the token, every other read
    # is open.
    assert statuses.pop("/api/v1/audit") == 401
    assert set(statuses.values()) == {200}, statuses
    acked = json.loads(answers["/api/v1/incidents"])["incidents"]
    mine = next(i for i in acked if i["id"] == incident.id)
    assert mine["acknowledged_by"] == "local user"
    assert "<workspace>/store.duckdb" in mine["detail"]
    busy = json.loads(answers[f"/api/v1/pipelines/{PIPELINE}/series/m0 (store busy)"])
    assert "<workspace>/store.duckdb" in busy["note"], busy["note"]


# ------------------------------------------------------------------ token file must be 0600


def _server_setting(ws: Workspace, line: str) -> None:
    """Add ``line`` to the workspace's ``[server]`` table."""
    settings = ws.settings_file.read_text()
    ws.settings_file.write_text(settings.replace("[server]", f"[server]\n{line}"))


def _serve(ws: Workspace) -> subprocess.CompletedProcess[str]:
    """``steadycast serve`` as a user starts it, for a refusal at start-up."""
    return subprocess.run(
        [sys.executable, "-m", "steadycast.cli", "serve", "--port", str(closed_port())],
        capture_output=True,
        text=True,
        env=_env(ws, None),
        timeout=120,
    )


@pytest.mark.parametrize("mode", [0o640, 0o660, 0o604, 0o620, 0o602, 0o644, 0o700 | 0o040])
def test_a_token_file_others_can_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    ws = Workspace.init(tmp_path / "ws")
    token_file = ws.root / "api-token"
    token_file.write_text(f"TOKEN-{secrets.token_hex(8)}\n")
    token_file.chmod(mode)
    _server_setting(ws, 'token_file = "api-token"')
    done = _serve(ws)
    assert done.returncode == 2, done.stderr
    assert str(token_file) in done.stderr and f"mode {mode:04o}" in done.stderr, done.stderr
    assert f"chmod 600 {token_file}" in done.stderr, done.stderr
    assert token_file.read_text().strip() not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_an_owner_only_token_file_is_used(
    tmp_path: Path, mode: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    ws = Workspace.init(tmp_path / "ws")
    token_file = ws.root / "api-token"
    token_file.write_text("owner-only-token\n")
    token_file.chmod(mode)
    _server_setting(ws, 'token_file = "api-token"')
    assert load_settings(ws).token == "owner-only-token"


def test_a_misspelt_server_key_is_refused(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    _server_setting(ws, 'token-file = "api-token"')
    done = _serve(ws)
    assert done.returncode == 2, done.stderr
    assert "[server] token-file: unknown key" in done.stderr, done.stderr
