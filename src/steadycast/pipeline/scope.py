"""What every stage of a run is given: the run's identity, its result and its stage records.

``RunResult`` is the ``--json`` shape of ``steadycast run``; ``STAGES`` names the recorded
stages in the order they run, and ``RunScope.stage`` measures one of them and keeps its record
for the result. Stages and partition progress are also logged (``steadycast.progress``), which
is what a scheduler without a terminal captures.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from steadycast.config import PipelineConfig
from steadycast.ops import alerts
from steadycast.ops.logging import ProgressLog, progress_log
from steadycast.storage import runlog
from steadycast.workspace import Workspace

__all__ = [
    "STAGES",
    "Progress",
    "RunResult",
    "RunScope",
    "config_digest",
    "config_doc",
    "config_lines",
    "new_run_id",
]

Progress = Callable[[str, int, int], None]  # (stage, done, total)

#: The measured stages of a run, in order (their position is the ``seq`` of their record).
STAGES = ("snapshot", "check", "forecast", "gate", "publish")


@dataclass
class RunResult:
    """The ``--json`` shape of ``steadycast run``. A skipped run (nothing new since the last
    run) has no record of its own: its ``run_id`` is ``None`` in the JSON, and ``skipped``
    names the run it found nothing new since."""

    run_id: str
    pipeline: str
    status: str  # "published" | "held" | "failed" | "skipped"
    release_id: str | None = None
    series: int = 0
    fallback_series: int = 0
    gate: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    config: dict[str, Any] | None = None  # the pipeline config as run (``config_doc``)
    skipped: dict[str, Any] | None = None  # ``unchanged.Unchanged.as_dict`` when skipped
    sinks: list[dict[str, Any]] = field(default_factory=list)  # ``deliver.Delivery.as_dict``

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": None if self.status == "skipped" else self.run_id,
            "pipeline": self.pipeline,
            "status": self.status,
            "release_id": self.release_id,
            "series": self.series,
            "fallback_series": self.fallback_series,
            "gate": self.gate,
            "stages": self.stages,
        }
        if self.config is not None:
            out["config"] = self.config
        if self.skipped is not None:
            out["skipped"] = self.skipped
        if self.sinks:
            out["sinks"] = self.sinks
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class RunScope:
    """One run as its stages see it. ``records`` collects the stages' records as they start,
    so a run that fails still reports the stages it went through."""

    ws: Workspace
    cfg: PipelineConfig
    run_id: str
    result: RunResult
    records: list[runlog.StageRecord] = field(default_factory=list)
    progress: Progress | None = None
    progress_lines: ProgressLog = field(default_factory=ProgressLog)

    @property
    def pipeline(self) -> str:
        return self.cfg.name

    @property
    def run_dir(self) -> Path:
        return self.ws.root / "runs" / self.run_id

    @contextmanager
    def stage(self, name: str) -> Iterator[runlog.StageRecord]:
        """Measure and record stage ``name`` (one of ``STAGES``); log its start and end."""
        progress_log.info("stage %s started", name, extra={"stage": name, "event": "started"})
        self.progress_lines.start(name)
        began = time.monotonic()
        try:
            with runlog.stage(
                self.ws.control_path, self.run_id, name, STAGES.index(name) + 1
            ) as record:
                self.records.append(record)
                yield record
        except BaseException as exc:
            elapsed = time.monotonic() - began
            progress_log.info(
                "stage %s failed after %.1f s: %s",
                name,
                elapsed,
                type(exc).__name__,
                extra={"stage": name, "event": "failed", "elapsed_s": round(elapsed, 3)},
            )
            raise
        wall = record.usage.wall_s if record.usage else time.monotonic() - began
        progress_log.info(
            "stage %s finished in %.1f s: %d rows in, %d rows out",
            name,
            wall,
            record.rows_in,
            record.rows_out,
            extra={
                "stage": name,
                "event": "finished",
                "elapsed_s": round(wall, 3),
                "rows_in": record.rows_in,
                "rows_out": record.rows_out,
            },
        )

    def advance(self, stage: str, done: int, total: int) -> None:
        """``done`` of ``total`` partitions of ``stage`` are finished: tell the progress bar
        (if any) and the progress log."""
        if self.progress is not None:
            self.progress(stage, done, total)
        self.progress_lines(stage, done, total)

    def stage_dicts(self) -> list[dict[str, Any]]:
        """The measured stages, as ``RunResult.stages`` lists them."""
        return [r.as_dict() for r in self.records if r.usage is not None]


def new_run_id(pipeline: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{pipeline}-{stamp}-{secrets.token_hex(2)}"


def config_digest(cfg: PipelineConfig) -> str:
    return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()


def config_doc(cfg: PipelineConfig) -> dict[str, Any]:
    """The configuration as recorded with a run and printed by ``run --json``, as an object:
    webhook URLs carry their secret in the path, so only their redacted form is kept."""
    urls = [alerts.redact_url(u) for u in cfg.alerts.webhook_url]
    shown = cfg.model_copy(update={"alerts": cfg.alerts.model_copy(update={"webhook_url": urls})})
    doc: dict[str, Any] = shown.model_dump(mode="json")
    return doc


def config_lines(config: PipelineConfig | dict[str, Any] | list[str]) -> list[str]:
    """A recorded configuration as text lines, for the audit log's diff between two runs (a
    run recorded before the config was an object kept these lines as they are)."""
    if isinstance(config, list):
        return config
    doc = config_doc(config) if isinstance(config, PipelineConfig) else config
    return json.dumps(doc, indent=1).splitlines()
