"""Record findings, then tell a person: the one path the run and ``steadycast monitor`` share.

Whoever notices something (a run's checks or gate, a failure, realised accuracy, a missed
deadline) hands its findings here; incidents are opened, updated or resolved in the control
plane, and the pipeline's alert channels hear of every change.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from steadycast.config import AlertsConfig, PipelineConfig
from steadycast.errors import ConfigError
from steadycast.ops import accuracy, alerts, incidents, sla
from steadycast.ops.incidents import Finding, IncidentChanges
from steadycast.workspace import Workspace


def record_and_notify(
    ws: Workspace,
    alerts_config: AlertsConfig,
    pipeline: str,
    subject: str,
    findings: Sequence[Finding],
    kinds: Collection[str],
) -> IncidentChanges:
    """Record ``findings`` (resolving live incidents of ``kinds`` not found again), then alert
    on what changed. ``subject`` is the run (or the monitor tick) that noticed."""
    changes = incidents.record_findings(ws.control_path, pipeline, subject, findings, kinds)
    alerts.notify(alerts_config, changes, ws.control_path, pipeline, subject)
    return changes


@dataclass(frozen=True)
class AccuracyWatch:
    """What one look at realised accuracy found: the release judged and its ratio to what its
    backtest promised (both ``None`` while no published forecast has its actuals yet)."""

    judged_release: str | None
    ratio: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"judged_release": self.judged_release, "ratio": self.ratio}


def watch_accuracy(ws: Workspace, cfg: PipelineConfig, subject: str) -> AccuracyWatch:
    """Score earlier releases against the actuals that arrived since, and record the drift."""
    watched = accuracy.monitor(ws, cfg.name, cfg)
    record_and_notify(ws, cfg.alerts, cfg.name, subject, watched.findings, watched.kinds)
    return AccuracyWatch(watched.judged_release, watched.ratio)


def watch_sla(
    ws: Workspace,
    cfg: PipelineConfig,
    subject: str,
    now: datetime,
    *,
    newest: datetime | None = None,
) -> sla.SlaState:
    """Was the forecast out by its deadline and is the data fresh? Opens or resolves the
    pipeline's SLA incidents."""
    state = sla.sla_state(ws, cfg.name, cfg.sla, now, newest=newest)
    record_and_notify(ws, cfg.alerts, cfg.name, subject, sla.sla_findings(cfg.name, state), ["sla"])
    return state


def watch_pipelines(ws: Workspace, pipeline: str | None, now: datetime) -> list[dict[str, Any]]:
    """One monitor tick over ``pipeline`` (or every pipeline): realised accuracy where the
    monitor is enabled, with its recent trend, and the SLA. Run on a schedule, not by a run: a
    missed deadline means no run happened.

    A pipeline file that does not load is an entry with its ``error`` (and its ``config``
    incident, opened by loading it); the other pipelines are still watched."""
    names = [pipeline] if pipeline else ws.pipeline_names()
    tick = f"monitor-{now:%Y%m%dT%H%M%SZ}"
    doc = []
    for name in names:
        try:
            cfg = ws.pipeline(name)
        except ConfigError as exc:
            doc.append({"pipeline": name, "error": str(exc)})
            continue
        entry: dict[str, Any] = {"pipeline": name, "error": None}
        if cfg.monitor.enabled:
            watched = watch_accuracy(ws, cfg, tick)
            entry["accuracy"] = {
                **watched.as_dict(),
                "trend": accuracy.accuracy_trend(ws, name, limit=10),
            }
        entry["sla"] = watch_sla(ws, cfg, tick, now).as_dict()
        doc.append(entry)
    return doc
