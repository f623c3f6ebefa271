"""What every stage of a run is given: the run's identity, its result and its stage records.

``RunResult`` is the ``--json`` shape of ``steadycast run``; ``STAGES`` names the recorded
stages in the order they run, and ``RunScope.stage`` measures one of them and keeps its record
for the result.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from steadycast.config import PipelineConfig
from steadycast.ops import alerts
from steadycast.storage import runlog
from steadycast.workspace import Workspace

__all__ = [
    "STAGES",
    "Progress",
    "RunResult",
    "RunScope",
    "config_digest",
    "config_lines",
    "new_run_id",
]

Progress = Callable[[str, int, int], None]  # (stage, done, total)

#: The measured stages of a run, in order (their position is the ``seq`` of their record).
STAGES = ("snapshot", "check", "forecast", "gate", "publish")


@dataclass
class RunResult:
    """The ``--json`` shape of ``steadycast run``."""

    run_id: str
    pipeline: str
    status: str  # "published" | "held" | "failed"
    release_id: str | None = None
    series: int = 0
    fallback_series: int = 0
    gate: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "status": self.status,
            "release_id": self.release_id,
            "series": self.series,
            "fallback_series": self.fallback_series,
            "gate": self.gate,
            "stages": self.stages,
        }
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

    @property
    def pipeline(self) -> str:
        return self.cfg.name

    @property
    def run_dir(self) -> Path:
        return self.ws.root / "runs" / self.run_id

    @contextmanager
    def stage(self, name: str) -> Iterator[runlog.StageRecord]:
        """Measure and record stage ``name`` (one of ``STAGES``)."""
        with runlog.stage(
            self.ws.control_path, self.run_id, name, STAGES.index(name) + 1
        ) as record:
            self.records.append(record)
            yield record

    def stage_dicts(self) -> list[dict[str, Any]]:
        """The measured stages, as ``RunResult.stages`` lists them."""
        return [r.as_dict() for r in self.records if r.usage is not None]


def new_run_id(pipeline: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{pipeline}-{stamp}-{secrets.token_hex(2)}"


def config_digest(cfg: PipelineConfig) -> str:
    return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()


def config_lines(cfg: PipelineConfig) -> list[str]:
    """The configuration as recorded with a run and diffed into the audit log: webhook URLs
    carry their secret in the path, so only their redacted form is kept."""
    urls = [alerts.redact_url(u) for u in cfg.alerts.webhook_url]
    shown = cfg.model_copy(update={"alerts": cfg.alerts.model_copy(update={"webhook_url": urls})})
    return shown.model_dump_json(indent=1).splitlines()
