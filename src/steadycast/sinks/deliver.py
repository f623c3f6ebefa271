"""Delivery: every sink of a pipeline follows its current release.

After a release becomes current (a run publishes, a person approves or rolls back), each sink
of the pipeline receives it whole (``ReleaseRows``). The control plane records per sink which
release it holds; a sink that raises, whatever it raises, opens an incident
(``sink:PIPELINE:SINK``), is recorded as pending, and changes nothing else: the release stays
published and served. Every later run of the pipeline (a skipped "nothing new" run and a held
run included) and ``steadycast sinks retry PIPELINE`` deliver again to each sink that does not
hold the current release; a delivery that succeeds resolves the sink's incident.

A sink is an edge of the system, written by drivers that talk to other machines: nothing it
raises escapes from here, and what is recorded of its errors has credentials scrubbed.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from steadycast.config import PipelineConfig, SinkConfig
from steadycast.errors import SteadycastError
from steadycast.ops import alerts, incidents
from steadycast.storage import control, releases
from steadycast.workspace import Workspace

__all__ = [
    "Delivery",
    "behind",
    "deliver",
    "deliver_pipeline",
    "sink_name",
    "sink_states",
]

log = logging.getLogger(__name__)

#: Environment variables whose values are secrets: never written to a record or a log.
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PGPASSWORD")
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*):[^@/\s]*@", re.I)


@dataclass(frozen=True)
class Delivery:
    """One sink after a delivery: ``state`` is "delivered" (written now), "current" (already
    held the current release: nothing to do) or "pending" (the write failed: ``error``)."""

    sink: str
    state: str
    release_id: str | None  # what the sink holds now
    current_release_id: str | None
    error: str | None = None
    incident_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "sink": self.sink,
            "state": self.state,
            "release_id": self.release_id,
            "current_release_id": self.current_release_id,
            "error": self.error,
            "incident_id": self.incident_id,
        }


def sink_name(cfg: SinkConfig) -> str:
    """The stable name of a sink in records and incidents: where it writes, without any
    credential (a user or password in a database URL is dropped)."""
    if cfg.kind == "postgresql":
        url = urlsplit(cfg.database)
        where = url.hostname or "localhost"
        if url.port:
            where += f":{url.port}"
        return f"postgresql://{where}{url.path or '/'}#{cfg.table}"
    return scrub(cfg.path)


def scrub(text: str) -> str:
    """``text`` without secrets: passwords in URLs and the values of the secret variables."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def deliver_pipeline(
    ws: Workspace, pipeline: str, subject: str | None = None, *, force: bool = False
) -> list[Delivery]:
    """``deliver`` for a pipeline named; a pipeline file that does not load delivers nothing
    (loading it opened its ``config`` incident)."""
    try:
        cfg = ws.pipeline(pipeline)
    except SteadycastError as exc:
        log.warning("%s: sinks not delivered: %s", pipeline, exc)
        return []
    return deliver(ws, cfg, subject, force=force)


def deliver(
    ws: Workspace, cfg: PipelineConfig, subject: str | None = None, *, force: bool = False
) -> list[Delivery]:
    """Bring every sink of the pipeline to its current release; returns one ``Delivery`` per
    sink. A sink that already holds the current release is left alone unless ``force``.
    ``subject`` is the run (or the lever) on whose behalf incidents are raised. Never raises
    for a sink's failure."""
    if not cfg.sinks:
        return []
    current = releases.current_id(ws.releases_dir, cfg.name)
    held = {s["sink"]: s for s in _rows(ws, cfg.name)}
    rows: Any = None  # the release's rows, read once for all sinks that need them
    out = []
    for sink_cfg in cfg.sinks:
        name = sink_name(sink_cfg)
        holds = (held.get(name) or {}).get("release_id")
        if current is None or (holds == current and not force):
            if current is not None:
                # A forced rewrite that failed left the sink holding this release, with an
                # incident: the sink is up to date, so that incident is over.
                _resolve_incident(ws, cfg, name, current, subject)
            out.append(Delivery(name, "current", holds, current))
            continue
        try:
            if rows is None:
                rows = _release_rows(ws, cfg.name, current)
            _write(ws, sink_cfg, rows)
        except BaseException as exc:  # a sink is an edge: whatever it raises is its failure
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            out.append(_failed(ws, cfg, name, holds, current, exc, subject))
            continue
        out.append(_delivered(ws, cfg, name, current, subject))
    return out


def behind(deliveries: list[Delivery]) -> list[Delivery]:
    """The sinks that do not hold the current release."""
    return [d for d in deliveries if d.state == "pending"]


def sink_states(ws: Workspace, cfg: PipelineConfig) -> list[Delivery]:
    """What each configured sink holds, as recorded (no delivery): "current", or "pending"
    with its last error when it holds another release (or none)."""
    current = releases.current_id(ws.releases_dir, cfg.name)
    held = {s["sink"]: s for s in _rows(ws, cfg.name)}
    out = []
    for sink_cfg in cfg.sinks:
        name = sink_name(sink_cfg)
        row = held.get(name) or {}
        holds = row.get("release_id")
        if current is None or holds == current:
            out.append(Delivery(name, "current", holds, current))
        else:
            error = row.get("last_error") or "not delivered yet"
            incident = _live_incident(ws, cfg.name, name)
            out.append(Delivery(name, "pending", holds, current, error, incident))
    return out


def _live_incident(ws: Workspace, pipeline: str, sink: str) -> int | None:
    """The open (or acknowledged) incident of a sink behind, so that every report of the sink
    names the incident to look at, not only the delivery that opened it."""
    with control.connect(ws.control_path) as con:
        row = con.execute(
            "SELECT id FROM incidents WHERE fingerprint = ? AND state != 'resolved' "
            "ORDER BY id DESC LIMIT 1",
            (incidents.fingerprint("sink", pipeline, sink),),
        ).fetchone()
    return int(row["id"]) if row else None


def _release_rows(ws: Workspace, pipeline: str, release_id: str) -> Any:
    """The release as a sink receives it: ``frames.read_forecast``'s rows (forecasts with their
    provenance, ``release_id`` and ``run_id``) as an Arrow table."""
    import pyarrow as pa

    from steadycast.frames import read_forecast
    from steadycast.sinks.base import ReleaseRows

    frame = read_forecast(ws, pipeline, release_id)
    run_id = str(frame.attrs.get("manifest", {}).get("run_id", release_id))
    frame.attrs = {}
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return ReleaseRows(pipeline, release_id, run_id, table)


def _write(ws: Workspace, sink_cfg: SinkConfig, rows: Any) -> None:
    from steadycast.sinks import open_sink

    open_sink(_anchored(ws, sink_cfg)).write(rows)


def _anchored(ws: Workspace, sink_cfg: SinkConfig) -> SinkConfig:
    """A local folder given relative is the workspace's, as ``[source] path`` is: the same
    sink whether a run starts from cron, a shell elsewhere or the server."""
    if sink_cfg.kind != "parquet" or "://" in sink_cfg.path:
        return sink_cfg
    path = Path(sink_cfg.path).expanduser()
    if path.is_absolute():
        return sink_cfg
    return sink_cfg.model_copy(update={"path": str(ws.root / path)})


def _rows(ws: Workspace, pipeline: str) -> list[dict[str, Any]]:
    with control.connect(ws.control_path) as con:
        return [
            dict(r)
            for r in con.execute("SELECT * FROM sinks WHERE pipeline = ?", (pipeline,)).fetchall()
        ]


def _delivered(
    ws: Workspace, cfg: PipelineConfig, name: str, release_id: str, subject: str | None
) -> Delivery:
    """Record the sink as holding ``release_id``, audit it, and resolve its incident."""
    now = control.utcnow()
    with control.connect(ws.control_path) as con:
        con.execute(
            "INSERT INTO sinks (pipeline, sink, release_id, delivered_at, attempts, "
            "last_attempt_at) VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (pipeline, sink) DO UPDATE "
            "SET release_id = excluded.release_id, delivered_at = excluded.delivered_at, "
            "pending_release_id = NULL, attempts = 0, last_attempt_at = excluded.last_attempt_at, "
            "last_error = NULL",
            (cfg.name, name, release_id, now, now),
        )
    control.audit(
        ws.control_path,
        "sink.delivered",
        pipeline=cfg.name,
        subject=release_id,
        detail={"sink": name, "run": subject},
    )
    log.info("%s: sink %s holds release %s", cfg.name, name, release_id)
    _resolve_incident(ws, cfg, name, release_id, subject)
    return Delivery(name, "delivered", release_id, release_id)


def _resolve_incident(
    ws: Workspace, cfg: PipelineConfig, name: str, release_id: str, subject: str | None
) -> None:
    """Resolve the sink's live incident, if any, now that it holds ``release_id``."""
    fingerprint = incidents.fingerprint("sink", cfg.name, name)
    changes = incidents.IncidentChanges()
    for live in incidents.list_incidents(ws.control_path, pipeline=cfg.name):
        if live.fingerprint == fingerprint and live.state != "resolved":
            note = f"delivered: sink {name} holds release {release_id}"
            changes.resolved.append(incidents.resolve(ws.control_path, live.id, note=note))
    if changes.resolved:
        _notify(ws, cfg, changes, subject)


def _failed(
    ws: Workspace,
    cfg: PipelineConfig,
    name: str,
    holds: str | None,
    current: str,
    exc: BaseException,
    subject: str | None,
) -> Delivery:
    """Record the sink as pending with its (scrubbed) error, and open or re-sight its
    incident; the release stays as it is."""
    problem = str(exc) if isinstance(exc, SteadycastError) else f"{type(exc).__name__}: {exc}"
    problem = scrub(" ".join(problem.split()))[:2000]
    log.warning(
        "%s: sink %s did not take release %s: %s",
        cfg.name,
        name,
        current,
        problem,
    )
    now = control.utcnow()
    with control.connect(ws.control_path) as con:
        con.execute(
            "INSERT INTO sinks (pipeline, sink, pending_release_id, attempts, last_attempt_at, "
            "last_error) VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (pipeline, sink) DO UPDATE SET "
            "pending_release_id = excluded.pending_release_id, attempts = sinks.attempts + 1, "
            "last_attempt_at = excluded.last_attempt_at, last_error = excluded.last_error",
            (cfg.name, name, current, now, problem),
        )
    finding = incidents.sink_finding(cfg.name, name, current, problem)
    changes = incidents.record_findings(
        ws.control_path, cfg.name, subject or current, [finding], kinds=()
    )
    _notify(ws, cfg, changes, subject)
    raised = changes.opened or changes.updated
    return Delivery(name, "pending", holds, current, problem, raised[0].id if raised else None)


def _notify(
    ws: Workspace, cfg: PipelineConfig, changes: incidents.IncidentChanges, subject: str | None
) -> None:
    try:
        alerts.notify(cfg.alerts, changes, ws.control_path, cfg.name, subject)
    except Exception:  # alerts never raise by contract; a sink's bookkeeping must not either
        log.exception("%s: alerting on a sink failed", cfg.name)
