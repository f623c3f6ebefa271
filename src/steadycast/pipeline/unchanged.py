"""Whether a run has anything new to work on: data (observations and covariates) and
configuration equal to the last decided run's mean the same release, or the same hold.

A scheduler fires whether or not data arrived; a run on the same input spends minutes to
publish what is already current (or to be held again). The data's identity is the hash of
the batches a snapshot would hold (``snapshot.data_identity``, what every run records as
``snapshot_sha256``); the configuration is the pipeline file as the run recorded it, without
its ``[engine]`` table (every engine gives the same release).

The last *decided* run is the pipeline's newest published or held run: a failed run decided
nothing, so it never makes the next one skip. A held run counts: its levers are ``approve``
and ``rollback``, not another run, which would either be held again or, as some checks compare
with the previous run (volume parity), publish the held data with nobody deciding. The skip keeps
the hold's exit code (3), so a scheduler keeps seeing the pipeline held until a person acts. A rollback since that
run is something new: the gate judges a run against the current release.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from steadycast.config import PipelineConfig
from steadycast.ops import advice
from steadycast.pipeline.scope import config_doc
from steadycast.pipeline.snapshot import data_identity
from steadycast.storage import control
from steadycast.workspace import Workspace

__all__ = ["Unchanged", "last_decided", "unchanged_since"]


@dataclass(frozen=True)
class Unchanged:
    """The decided run that a new run would only repeat."""

    run_id: str
    status: str  # "published" | "held"
    finished_at: str | None
    release_id: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "since_run": self.run_id,
            "since_status": self.status,
            "since_finished_at": self.finished_at,
            "since_release_id": self.release_id,
            "message": self.message,
        }


def unchanged_since(ws: Workspace, cfg: PipelineConfig) -> Unchanged | None:
    """The last decided run when nothing changed since it (same data, same configuration),
    else ``None``: the run has work to do."""
    last = last_decided(ws, cfg.name)
    if last is None or not last.get("snapshot_sha256"):
        return None
    recorded = json.loads(last["detail"]).get("config") if last.get("detail") else None
    if not isinstance(recorded, dict) or _without_engine(recorded) != _without_engine(
        config_doc(cfg)
    ):
        return None
    if data_identity(ws, cfg) != last["snapshot_sha256"]:
        return None
    if _rolled_back_since(ws, cfg.name, last.get("finished_at")):
        return None
    when = _when(last.get("finished_at"))
    force = advice.command(ws.root, "run", cfg.name, "--force")
    run_id, status = last["run_id"], last["status"]
    if status == "published":
        message = (
            f"no new data since run {run_id} (published {when}); nothing to do. Force with: {force}"
        )
    else:
        message = (
            f"no new data since run {run_id} (held {when}); still held: a hold is cleared by a "
            f"person, not by running the same data again. Publish it with: "
            f"{advice.approve(ws.root, run_id)}; or force a new run with: {force}"
        )
    return Unchanged(run_id, status, last.get("finished_at"), last.get("release_id"), message)


def last_decided(ws: Workspace, pipeline: str) -> dict[str, Any] | None:
    """The pipeline's newest published or held run, as its record (a failed run decided
    nothing): what a new run would repeat, and the gate results the release stands on."""
    with control.connect(ws.control_path) as con:
        row = con.execute(
            "SELECT run_id, status, finished_at, release_id, snapshot_sha256, detail FROM runs "
            "WHERE pipeline = ? AND status IN ('published', 'held') "
            "ORDER BY started_at DESC, run_id DESC LIMIT 1",
            (pipeline,),
        ).fetchone()
    return dict(row) if row is not None else None


def _rolled_back_since(ws: Workspace, pipeline: str, finished_at: str | None) -> bool:
    """A rollback after the run changed what a new run is judged against (the gate measures
    jumps against the current release): a new run on the same data may decide otherwise."""
    with control.connect(ws.control_path) as con:
        row = con.execute(
            "SELECT 1 FROM audit WHERE pipeline = ? AND action = 'release.rollback' AND at > ? "
            "LIMIT 1",
            (pipeline, finished_at or ""),
        ).fetchone()
    return row is not None


def _without_engine(doc: dict[str, Any]) -> dict[str, Any]:
    """A recorded configuration without the engine it ran on: the release is the same on any."""
    return {key: value for key, value in doc.items() if key != "engine"}


def _when(stamp: str | None) -> str:
    """A recorded UTC time as a person reads it: 2026-12-06 15:02 UTC."""
    if not stamp:
        return "at an unknown time"
    return f"{stamp[:16].replace('T', ' ')} UTC"
