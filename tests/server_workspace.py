"""A served workspace for the API, fuzz and dashboard tests: a real run, a second release, and
a real uvicorn server on 127.0.0.1 in a thread.

The real run (about ten seconds on a shared machine) is made once per test process and copied
for each module that asks, so every module gets its own workspace without paying again.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import uvicorn
from fastapi import FastAPI

from steadycast.storage import releases
from steadycast.workspace import Workspace
from tests.observability_workspace import real_run_workspace

TOKEN = "test-token-5a1f"  # a test secret, only ever sent to 127.0.0.1
PIPELINE = "meters"
SECOND = "meters-manual-second"

_template: Path | None = None


@dataclass(frozen=True)
class Served:
    """The workspace under test and its two releases (``second`` is current at the start)."""

    ws: Workspace
    run_id: str
    first: str
    second: str


def _build(root: Path) -> tuple[Workspace, str]:
    ws, run_id = real_run_workspace(root)
    first = releases.current(ws.releases_dir, PIPELINE)
    if first is None:
        raise RuntimeError("the fixture run published no release")
    frame = releases.read_forecasts(first)
    # A second release that differs in every value, so a response shows which one it came from.
    changed = frame.assign(**{c: frame[c] + 1.0 for c in frame.columns if c.startswith("yhat")})
    prov = pd.read_parquet(first.path / "provenance.parquet")
    second = releases.write_release(
        ws.releases_dir,
        PIPELINE,
        SECOND,
        changed,
        {"levels": first.manifest["levels"], "horizon": first.manifest["horizon"]},
        extras={"provenance": prov},
    )
    releases.make_current(ws.releases_dir, PIPELINE, second.release_id)
    return ws, run_id


def served_workspace(tmp_root: Path) -> Served:
    """A copy of the once-per-process template workspace under ``tmp_root``."""
    global _template
    if _template is None or not _template.exists():
        build_root = tmp_root.parent / f"{tmp_root.name}-template"
        _build(build_root)
        _template = build_root
    shutil.copytree(_template, tmp_root)
    ws = Workspace.open(tmp_root / "ws")
    listed = releases.list_releases(ws.releases_dir, PIPELINE)
    first = next(r for r in listed if r.release_id != SECOND)
    return Served(ws=ws, run_id=first.release_id, first=first.release_id, second=SECOND)


@contextmanager
def running(app: FastAPI, *, access_log: bool = False) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn on a free 127.0.0.1 port; yields the base URL.

    ``log_config=None`` leaves logging alone (no dictConfig in the test process), so uvicorn's
    records propagate to pytest's capture.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, log_level="info", access_log=access_log, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
