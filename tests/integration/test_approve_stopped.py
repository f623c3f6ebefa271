"""The manual lever always exists: a run its data checks stopped before forecasting is approved
with the command the product itself prints, pasted as printed, and that command publishes it.

Everything goes through the installed ``steadycast`` command in a child process, from a
directory that is not the workspace, with no environment a user would not have set: the
printed commands must carry their own ``-w`` and quoting to work.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from steadycast.ops.incidents import list_incidents
from steadycast.server import create_app
from steadycast.storage import releases
from steadycast.storage.control import audit_entries
from steadycast.storage.runlog import get_run
from steadycast.workspace import Workspace
from tests.pipelines import pipeline_toml
from tests.server_workspace import TOKEN, running

BIN = Path(sys.executable).parent
STEADYCAST = BIN / "steadycast"

PIPELINE = pipeline_toml(
    id_column="id",
    time_column="t",
    value_column="v",
    models=["SeasonalNaive", "HistoricAverage"],
    forecast={"workers": 1},
)

#: A command the product suggests: at the start of a line, after a label's colon, or in backticks.
ADVICE = re.compile(r"(?:^\s*|:\s+|`)(steadycast\s+[a-z][^`\n]*?)\s*(?:`|$)", re.MULTILINE)


def user_env() -> dict[str, str]:
    """The environment of a user's shell: no steadycast settings, the command on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEADYCAST_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def steadycast(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STEADYCAST), *args],
        capture_output=True,
        text=True,
        env=user_env(),
        cwd=cwd,
        timeout=600,
    )


def paste(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a printed command as a person pasting it into a shell would."""
    return subprocess.run(
        ["/bin/sh", "-c", command],
        capture_output=True,
        text=True,
        env=user_env(),
        cwd=cwd,
        timeout=600,
    )


def advice(text: str) -> list[str]:
    """Every command a piece of output suggests, in order."""
    return [m.group(1).strip() for m in ADVICE.finditer(text)]


def hourly(path: Path, ids: list[str], start: str, days: int) -> Path:
    ds = pd.date_range(start, periods=24 * days, freq="h")
    frames = [
        pd.DataFrame(
            {
                "id": uid,
                "t": ds.strftime("%Y-%m-%d %H:%M"),
                "v": 5 + i + np.sin(2 * np.pi * ds.hour.to_numpy() / 24),
            }
        )
        for i, uid in enumerate(ids)
    ]
    pd.concat(frames).to_csv(path, index=False)
    return path


@dataclass(frozen=True)
class Stopped:
    ws: Workspace
    first_release: str
    run_id: str
    printed: str  # what ``run`` printed
    here: Path  # where the user's shell is: not the workspace


def _stopped_run(tmp_path: Path) -> Stopped:
    """A published pipeline whose next delivery has most series missing: the default
    volume_parity check stops the run before forecasting (exit 3)."""
    root = tmp_path / "my workspace"  # a space: printed commands must quote it
    here = tmp_path / "elsewhere"
    here.mkdir()
    assert steadycast("init", str(root), cwd=here).returncode == 0
    (root / "pipelines" / "p.toml").write_text(PIPELINE)
    ids = [f"s{i}" for i in range(6)]
    first = hourly(tmp_path / "a.csv", ids, "2024-01-01", 8)
    assert steadycast("ingest", "p", str(first), "-w", str(root), cwd=here).returncode == 0
    done = steadycast("run", "p", "-w", str(root), "--json", cwd=here)
    assert done.returncode == 0, done.stdout + done.stderr
    first_release = json.loads(done.stdout)["release_id"]
    # Four of six series vanish from the next delivery.
    second = hourly(tmp_path / "b.csv", ids[:2], "2024-01-09", 3)
    assert steadycast("ingest", "p", str(second), "-w", str(root), cwd=here).returncode == 0
    held = steadycast("run", "p", "-w", str(root), cwd=here)
    assert held.returncode == 3, held.stdout + held.stderr
    run_id = re.search(r"run (p-\S+): held", held.stdout)
    assert run_id, held.stdout
    return Stopped(Workspace(root), first_release, run_id.group(1), held.stdout, here)


@pytest.fixture(scope="module")
def _stopped_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Stopped, Path]:
    """Built once (two runs through the CLI cost about 20 s); each test gets a fresh copy at
    the same path, so what ``run`` printed is true of every copy."""
    made = _stopped_run(tmp_path_factory.mktemp("stopped"))
    kept = made.ws.root.with_name("pristine")
    shutil.copytree(made.ws.root, kept)
    return made, kept


@pytest.fixture
def stopped(_stopped_once: tuple[Stopped, Path]) -> Stopped:
    made, kept = _stopped_once
    shutil.rmtree(made.ws.root)
    shutil.copytree(kept, made.ws.root)
    return made


def test_approve_as_printed_continues_a_run_its_data_checks_stopped(stopped: Stopped) -> None:
    ws, first_release, run_id = stopped.ws, stopped.first_release, stopped.run_id
    printed, here = stopped.printed, stopped.here
    record = get_run(ws.control_path, run_id)
    assert record is not None and record["status"] == "held"
    assert "volume parity" in (record["error"] or "")
    assert not (ws.root / "runs" / run_id / "parts").exists()  # stopped before forecasting

    commands = advice(printed)
    approve = [c for c in commands if c.startswith("steadycast approve")]
    assert len(approve) == 1, printed
    done = paste(approve[0], here)
    assert done.returncode == 0, done.stdout + done.stderr
    assert run_id in done.stdout
    assert "continued past its data checks (volume_parity)" in done.stdout

    # A new current release, made by the stopped run from its own snapshot.
    current = releases.current(ws.releases_dir, "p")
    assert current is not None and current.release_id != first_release
    assert current.manifest["run_id"] == run_id and current.manifest.get("approved") is True
    frame = releases.read_forecasts(current)
    assert sorted(frame["unique_id"].unique()) == [f"s{i}" for i in range(6)]
    assert frame.groupby("unique_id").size().eq(12).all()
    # The series still reporting are forecast from the second delivery (it ends on Jan 11).
    start = frame[frame["unique_id"] == "s0"]["ds"].min()
    assert pd.Timestamp(start).tz_localize(None) == pd.Timestamp("2024-01-12 00:00")

    record = get_run(ws.control_path, run_id)
    assert record is not None
    assert (record["status"], record["release_id"]) == ("published", current.release_id)
    detail = json.loads(record["detail"])
    assert detail["approval"]["overridden_checks"] == ["volume_parity"]
    assert detail["approval"]["reason"] == shlex.split(approve[0])[4]
    assert detail["gate"], "the output gate ran for the record"
    assert {s["name"] for s in record["stages"]} >= {"snapshot", "check", "forecast", "publish"}

    approved = [e for e in audit_entries(ws.control_path, "p") if e["action"] == "run.approved"]
    assert len(approved) == 1
    entry = approved[0]
    assert entry["subject"] == run_id and entry["actor"]
    assert entry["reason"] == detail["approval"]["reason"]
    assert entry["detail"]["overridden_checks"] == ["volume_parity"]
    assert entry["detail"]["release_id"] == current.release_id

    # One cause, one incident: the stop's check and gate rule are named in the held incident,
    # not opened beside it, and the approval closes it saying who and why.
    by_kind = {i.fingerprint: i for i in list_incidents(ws.control_path, pipeline="p")}
    assert "gate:blocking_checks:p" not in by_kind and "check:volume_parity:p" not in by_kind
    held = by_kind["held:p"]
    assert "volume_parity" in (held.detail or "") and "blocking_checks" in held.title
    assert held.state == "resolved", held
    assert f"run {run_id} approved by {entry['actor']}: " in (held.resolution or "")
    assert held.resolved_by == entry["actor"] and held.resolved_at

    # The lever is pulled once: again, it says why not (usage, exit 2); an unknown run is 2 too.
    again = paste(approve[0], here)
    assert again.returncode == 2 and "published, not held" in again.stderr
    unknown = steadycast("approve", "p-nope", "--reason", "x", "-w", str(ws.root), cwd=here)
    assert unknown.returncode == 2 and "no run 'p-nope'" in unknown.stderr


def test_every_command_printed_for_a_stopped_run_works(stopped: Stopped) -> None:
    """What ``run`` and ``status`` print about a held run, pasted as printed, each one."""
    ws, run_id, printed, here = stopped.ws, stopped.run_id, stopped.printed, stopped.here
    status = steadycast("status", "p", "-w", str(ws.root), cwd=here)
    assert status.returncode == 0, status.stderr
    commands = advice(printed) + advice(status.stdout)
    assert any(c.startswith("steadycast incidents") for c in commands), printed
    assert sum(c.startswith("steadycast approve") for c in commands) == 2, commands
    for command in sorted(set(commands), key=lambda c: c.startswith("steadycast approve")):
        assert "-w" in shlex.split(command), command  # the shell is elsewhere
        done = paste(command, here)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert releases.current_id(ws.releases_dir, "p") == run_id


def test_a_stopped_run_whose_snapshot_is_gone_says_so(stopped: Stopped) -> None:
    ws, first_release, run_id = stopped.ws, stopped.first_release, stopped.run_id
    printed, here = stopped.printed, stopped.here
    for part in (ws.root / "runs" / run_id / "snapshot").rglob("*.parquet"):
        part.unlink()
    (approve,) = [c for c in advice(printed) if c.startswith("steadycast approve")]
    done = paste(approve, here)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "snapshot" in done.stderr and "gone" in done.stderr and run_id in done.stderr
    assert "Traceback" not in done.stderr
    assert releases.current_id(ws.releases_dir, "p") == first_release
    record = get_run(ws.control_path, run_id)
    assert record is not None and record["status"] == "held"


def test_approve_over_http_continues_a_stopped_run(stopped: Stopped) -> None:
    """``POST /api/v1/runs/RUN/approve`` pulls the same lever, audited with the API's actor."""
    ws, run_id = stopped.ws, stopped.run_id
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"/api/v1/runs/{run_id}/approve"
    with (
        running(create_app(ws, token=TOKEN)) as base,
        httpx.Client(base_url=base, timeout=600) as client,
    ):
        answer = client.post(url, json={"reason": "the meters were retired"}, headers=auth)
        assert answer.status_code == 200, answer.text
        assert answer.json()["release_id"] == run_id
        assert client.get("/api/v1/pipelines/p/forecast").json()["release_id"] == run_id
        again = client.post(url, json={"reason": "twice"}, headers=auth)
        assert again.status_code == 400 and "not held" in again.text
    entry = next(e for e in audit_entries(ws.control_path, "p") if e["action"] == "run.approved")
    assert entry["actor"].startswith("api:") and entry["reason"] == "the meters were retired"
    assert entry["detail"]["overridden_checks"] == ["volume_parity"]


def test_a_failed_run_cannot_be_approved(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    assert steadycast("init", str(root), cwd=tmp_path).returncode == 0
    (root / "pipelines" / "p.toml").write_text(PIPELINE)
    failed = steadycast("run", "p", "-w", str(root), cwd=tmp_path / "ws" / "pipelines")
    assert failed.returncode == 1
    found = re.search(r"run (p-\S+): failed", failed.stdout)
    assert found, failed.stdout
    run_id = found.group(1)
    # The failure's advice names the workspace, since the shell is elsewhere (FILE is yours).
    (ingest,) = [c for c in advice(failed.stdout) if c.startswith("steadycast ingest")]
    assert shlex.split(ingest) == ["steadycast", "ingest", "p", "FILE", "-w", str(root)]
    done = steadycast("approve", run_id, "--reason", "x", "-w", str(root), cwd=tmp_path)
    assert done.returncode == 2 and "failed, not held" in done.stderr


def _demo_commands(text: str) -> list[str]:
    after = text.split("Levers (one command each):", 1)
    assert len(after) == 2, text
    return advice(after[1])


def _serve_answers(command: str, cwd: Path) -> None:
    """Start the printed ``serve``; it must answer on the address it prints, then stop."""
    url = "http://127.0.0.1:8000/healthz"
    try:
        urllib.request.urlopen(url, timeout=1)
    except OSError:
        pass
    else:
        return  # the port is someone else's here: nothing this test can check
    with subprocess.Popen(
        ["/bin/sh", "-c", f"exec {command}"],
        env=user_env(),
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as proc:
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                try:
                    with urllib.request.urlopen(url, timeout=1) as answer:
                        assert answer.status == 200
                        return
                except OSError:
                    time.sleep(0.3)
            pytest.fail(f"{command} did not answer on {url} within 60 s")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def test_demo_ends_with_a_lever_that_works(tmp_path: Path) -> None:
    """``steadycast demo`` (what ``make demo`` runs): its held run is published by the approve
    command it prints, pasted as printed; every other command it suggests works too.
    About 45 s on two busy cores (the demo about 20 s, the approval about 25 s)."""
    directory = tmp_path / "demo workspace"
    here = tmp_path / "elsewhere"
    here.mkdir()
    demo = steadycast("demo", str(directory), cwd=here)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    held = re.search(r"Run (meters-\S+): held", demo.stdout)
    assert held, demo.stdout
    run_id = held.group(1)
    ws = Workspace(directory.resolve())
    first = releases.current_id(ws.releases_dir, "meters")
    assert first is not None and first != run_id

    commands = _demo_commands(demo.stdout)
    assert commands[0].startswith("steadycast approve ") and run_id in commands[0], commands
    approved = paste(commands[0], here)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert releases.current_id(ws.releases_dir, "meters") == run_id
    record = get_run(ws.control_path, run_id)
    assert record is not None and record["status"] == "published"
    assert not [
        i
        for i in list_incidents(ws.control_path, pipeline="meters")
        if i.fingerprint == "held:meters" and i.state != "resolved"
    ]

    for command in commands[1:]:
        if shlex.split(command, comments=True)[1] == "serve":
            _serve_answers(command.split("#", 1)[0].strip(), here)
            continue
        done = paste(command, here)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    # The printed rollback went back to the release before the approval.
    assert releases.current_id(ws.releases_dir, "meters") == first
