"""The commands an on-call person types every day, run as they type them: the real CLI in a
child process (or the real server), with no steadycast settings in the environment.

Exports into folders that do not exist yet, the docs URL the server prints, ``report latest``,
one exit code for everything "not found", readable figures from ``monitor``, a paged quality
endpoint, ``steadycast models`` agreeing with docs/models.md, ``-w`` before the command, and
test-only plugins kept out of the environment ``make demo`` uses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

import steadycast
from steadycast.server import create_app
from tests.observability_workspace import HORIZON, SERIES, START, Observed
from tests.server_workspace import running

REPO = Path(__file__).resolve().parents[2]


def user_env() -> dict[str, str]:
    """A user's shell: no steadycast settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STEADYCAST_")}


def steadycast_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steadycast.cli", *args],
        capture_output=True,
        text=True,
        env=user_env(),
        cwd=cwd,
        timeout=300,
    )


# ----------------------------------------------------------------------------- forecast -o


def test_forecast_to_a_folder_that_does_not_exist_creates_it(
    observed: Observed, tmp_path: Path
) -> None:
    target = tmp_path / "out" / "daily" / "f.csv"
    done = steadycast_cli("forecast", "meters", "-o", str(target), "-w", str(observed.ws.root))
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(target)
    assert set(frame["unique_id"]) and len(frame) == frame["unique_id"].nunique() * HORIZON

    parquet = tmp_path / "p" / "f.parquet"
    done = steadycast_cli(
        "forecast", "meters", "--format", "parquet", "-o", str(parquet), "-w", str(observed.ws.root)
    )
    assert done.returncode == 0, done.stderr
    assert len(pd.read_parquet(parquet)) == len(frame)


def test_forecast_where_no_folder_can_be_made_is_one_line_naming_it(
    observed: Observed, tmp_path: Path
) -> None:
    (tmp_path / "taken").write_text("a file, not a folder\n")
    target = tmp_path / "taken" / "f.csv"
    done = steadycast_cli("forecast", "meters", "-o", str(target), "-w", str(observed.ws.root))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert str(tmp_path / "taken") in line and "cannot create the folder" in line


# ----------------------------------------------------------------------------- serve


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_docs_url_serve_prints_is_served(observed: Observed) -> None:
    helped = steadycast_cli("serve", "--help")
    assert helped.returncode == 0 and "/api/docs" in helped.stdout
    assert not re.search(r"(?<!/api)/docs\b", helped.stdout)

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "steadycast.cli", "serve", "--port", str(port)],
        cwd=observed.ws.root,
        env=user_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        found = re.search(r"docs at (http://\S+?)\)?$", banner.strip())
        assert found, banner
        url = found[1]
        assert url == f"http://127.0.0.1:{port}/api/docs"
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(url, timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert page.status_code == 200 and "swagger" in page.text.lower()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stderr is not None:
            proc.stderr.close()


# ----------------------------------------------------------------------------- report latest


def test_report_takes_latest_or_a_pipeline_besides_a_run_id(
    observed: Observed, tmp_path: Path
) -> None:
    root = str(observed.ws.root)
    by_name = steadycast_cli("report", "meters", "-o", str(tmp_path / "m.html"), "-w", root)
    assert by_name.returncode == 0, by_name.stderr
    assert f"(run {observed.published})" in by_name.stdout
    assert observed.published in (tmp_path / "m.html").read_text(encoding="utf-8")

    latest = steadycast_cli("report", "latest", "-o", str(tmp_path / "l.html"), "-w", root)
    assert latest.returncode == 0, latest.stderr
    assert f"(run {observed.failed})" in latest.stdout  # "other" ran last

    by_id = steadycast_cli("report", observed.held, "-o", str(tmp_path / "h.html"), "-w", root)
    assert by_id.returncode == 0 and f"(run {observed.held})" in by_id.stdout


# ----------------------------------------------------------------------------- not found


def test_not_found_is_one_exit_code_in_every_command(observed: Observed, tmp_path: Path) -> None:
    root = str(observed.ws.root)
    html = str(tmp_path / "r.html")
    # An unknown pipeline, run, release, series and incident (status, runs, releases and monitor
    # of an unknown pipeline take the same path as run and forecast: test_commands.py has them).
    commands = [
        ("run", "nope"),
        ("forecast", "nope"),
        ("forecast", "meters", "--series", "nope"),
        ("report", "nope", "-o", html),
        ("approve", "meters-nope", "--reason", "x"),
        ("rollback", "meters", "--to", "nope", "--reason", "x"),
        ("ack", "999"),
        ("resolve", "999"),
    ]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda args: steadycast_cli(*args, "-w", root), commands))
    codes = {}
    for args, done in zip(commands, results, strict=True):
        assert "Traceback" not in done.stderr, (args, done.stderr)
        assert "nope" in done.stderr or "999" in done.stderr, (args, done.stderr)
        codes[" ".join(args[:2])] = done.returncode
    assert set(codes.values()) == {steadycast.NotFoundError.exit_code}, codes
    assert steadycast.NotFoundError.exit_code == 2


# ----------------------------------------------------------------------------- monitor


def _next_day(path: Path) -> Path:
    """Actuals for the hours the published release forecast (the day after the fleet's data)."""
    hours = pd.date_range(START + pd.Timedelta(days=10), periods=24, freq="1h")
    frames = [
        pd.DataFrame(
            {
                "meter_id": uid,
                "timestamp": hours.strftime("%Y-%m-%d %H:%M"),
                "kwh": (1.0 + 0.5 * np.sin(2 * np.pi * (hours.hour.to_numpy() + i) / 24))
                * (1 + i)
                * 1.1,
            }
        )
        for i, uid in enumerate(SERIES)
    ]
    pd.concat(frames).to_csv(path, index=False)
    return path


def test_monitor_prints_figures_rounded(observed: Observed, tmp_path: Path) -> None:
    copy = observed.copy(tmp_path)
    steadycast.ingest(copy.ws, "meters", [_next_day(tmp_path / "next.csv")])
    as_json = steadycast_cli("monitor", "meters", "--json", "-w", str(copy.ws.root))
    assert as_json.returncode == 0, as_json.stderr
    trend = json.loads(as_json.stdout)["pipelines"][0]["accuracy"]["trend"]
    assert trend and trend[-1]["mase"] is not None  # scored: there are figures to print

    shown = steadycast_cli("monitor", "meters", "-w", str(copy.ws.root))
    assert shown.returncode == 0, shown.stderr
    assert f"mase {trend[-1]['mase']:.2f}" in shown.stdout, shown.stdout
    assert not re.findall(r"\d\.\d{3,}", shown.stdout), shown.stdout


# ----------------------------------------------------------------------------- quality paging


def test_the_quality_endpoint_is_paged(observed: Observed) -> None:
    with running(create_app(observed.ws)) as base:
        url = f"{base}/api/v1/pipelines/meters/quality"
        everything = httpx.get(url, params={"limit": 1000}).json()
        total = everything["checks_total"]
        assert total == len(everything["checks"]) > 3
        first = httpx.get(url).json()
        assert (first["limit"], first["offset"]) == (100, 0)
        pages, offset = [], 0
        while offset < total:
            page = httpx.get(url, params={"limit": 2, "offset": offset}).json()
            assert len(page["checks"]) <= 2 and page["checks_total"] == total
            pages += page["checks"]
            offset += 2
        assert pages == everything["checks"]
        flags = [bool(c["passed"]) for c in pages]
        assert flags == sorted(flags) and not flags[0]  # failures first, on the first page
        for bad in ({"limit": 1001}, {"limit": 0}, {"offset": -1}):
            refused = httpx.get(url, params=bad)
            assert 400 <= refused.status_code < 500, (bad, refused.text)
        spec = httpx.get(f"{base}/api/v1/openapi.json").json()
        params = spec["paths"]["/api/v1/pipelines/{pipeline}/quality"]["get"]["parameters"]
        named = {p["name"]: p for p in params}
        assert named["limit"]["schema"]["maximum"] == 1000
        assert named["limit"]["schema"]["default"] == 100 and "offset" in named
        assert "checks_total" in spec["components"]["schemas"]["Quality"]["properties"]


# ----------------------------------------------------------------------------- models tiers


def test_the_models_page_and_the_models_command_agree_on_tiers() -> None:
    listed = steadycast_cli("models", "--json")
    assert listed.returncode == 0, listed.stderr
    tiers = {m["name"]: m["tier"] for m in json.loads(listed.stdout)["models"]}
    page = (REPO / "docs" / "models.md").read_text(encoding="utf-8")
    documented = {}
    for row in re.findall(r"^\| (.+) \| (.+) \| (fast|full) \|$", page, re.MULTILINE):
        for name in re.findall(r"`(\w+)`", row[1]):
            documented[name] = row[2]
    assert {"LightGBM", "AutoETS", "SeasonalNaive", "FastNaive"} <= set(documented)
    assert {n: tiers.get(n) for n in documented} == documented


# ----------------------------------------------------------------------------- -w first


def test_workspace_given_before_the_command(observed: Observed, tmp_path: Path) -> None:
    root = str(observed.ws.root)
    first = steadycast_cli("-w", root, "status", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "meters" in {p["pipeline"] for p in json.loads(first.stdout)["pipelines"]}

    own_wins = steadycast_cli(
        "-w", str(tmp_path / "nope"), "status", "--json", "-w", root, cwd=tmp_path
    )
    assert own_wins.returncode == 0, own_wins.stderr

    wrong = steadycast_cli("-w", str(tmp_path / "nope"), "status", cwd=tmp_path)
    assert wrong.returncode == 2 and str(tmp_path / "nope") in wrong.stderr
    assert "Traceback" not in wrong.stderr


# ----------------------------------------------------------------------------- environments


def _dry_run(target: str) -> str:
    done = subprocess.run(
        ["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_test_plugins_go_only_into_the_test_environment() -> None:
    demo = _dry_run("demo")
    assert "chaos_models" not in demo and "model_template" not in demo
    assert "pip uninstall" in demo and "steadycast-chaos-models" in demo  # an old .venv is cleaned
    assert ".venv/bin/steadycast demo" in demo
    test = _dry_run("test")
    for plugin in ("tests/plugins/chaos_models", "examples/model_template"):
        assert re.search(r"\.venv-test/bin/python -m pip install .*-e \$p", test)
        assert plugin in test
    assert ".venv/bin/" not in test  # the tests neither build nor touch the demo's .venv
    assert ".venv-test/bin/python -m pytest" in test
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
