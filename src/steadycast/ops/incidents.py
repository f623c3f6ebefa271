"""Incidents: what needs a person, de-duplicated, with a state a person can move.

An incident is opened by a failed check, a held run, a gate rule, an SLA miss, a plugin
failure, a failed run, a sink that did not take a release (``sink:PIPELINE:SINK``) or a
configuration file that does not load (``config:FILE``). Its
*fingerprint* names the cause (``check:flat_line:meters:m42``,
``gate:fallback_share:meters``, ``held:meters``), so the same stuck meter seen run after run is
one incident whose ``occurrences`` and ``last_seen`` grow, not a new incident every run.

States::

    open ──ack──> acknowledged ──resolve──> resolved
      └──────────────resolve──────────────────┘

An incident also resolves itself when its cause is gone: ``observe_run`` (or
``record_findings``) resolves the live incidents of the kinds a run looked at whose fingerprint
that run did not see, with the resolution "cause gone: not seen in run X". A cause that comes
back after resolution opens a new incident (a new id), so history is never rewritten.

Incidents live in the control plane (SQLite, WAL; migration 3 of ``storage/control.py``): a unique
partial index keeps at most one live incident per fingerprint even when two processes race.
Every change of state writes its audit entry (``incident.opened``, ``incident.acknowledged``,
``incident.resolved``) in the same transaction as the change, in the format of
``control.audit``, so there is never a state change without its audit entry, and a run that
opens ten thousand incidents does it in one commit rather than twenty thousand.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from steadycast.errors import NotFoundError, UsageError
from steadycast.quality.severity import Severity, at_least, rank
from steadycast.storage.control import connect, current_actor, utcnow

if TYPE_CHECKING:
    from steadycast.quality.checks import CheckResult
    from steadycast.quality.gate import GateDecision

__all__ = [
    "KINDS",
    "SEVERITIES",
    "STATES",
    "Finding",
    "Incident",
    "IncidentChanges",
    "acknowledge",
    "check_findings",
    "failed_finding",
    "fingerprint",
    "gate_findings",
    "get_incident",
    "held_finding",
    "list_incidents",
    "observe_run",
    "plugin_finding",
    "raise_incident",
    "record_findings",
    "resolve",
    "sink_finding",
]

KINDS: tuple[str, ...] = (
    "check",
    "gate",
    "held",
    "sla",
    "drift",
    "plugin",
    "failed",
    "config",
    "alerts",
    "sink",
)
STATES: tuple[str, ...] = ("open", "acknowledged", "resolved")
SEVERITIES: tuple[str, ...] = tuple(s.value for s in Severity)


@dataclass(frozen=True)
class Incident:
    """One incident as stored; times are ISO 8601 UTC strings of the control plane.

    Also the incident of the HTTP API: ``server/schemas.py`` builds its response model from
    these fields, so a field added here is served and documented there.
    """

    id: int
    fingerprint: str
    pipeline: str
    kind: str
    severity: str
    state: str
    title: str
    detail: str | None
    first_seen: str
    last_seen: str
    occurrences: int
    run_id: str | None
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    acknowledge_note: str | None = None
    resolved_by: str | None = None
    resolved_at: str | None = None
    resolution: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Finding:
    """Something a run saw that should be an incident (or keep one alive)."""

    fingerprint: str
    kind: str
    severity: str
    title: str
    detail: str = ""


@dataclass
class IncidentChanges:
    """What one ``record_findings`` did: opened (new ids), updated (seen again), resolved."""

    opened: list[Incident] = field(default_factory=list)
    updated: list[Incident] = field(default_factory=list)
    resolved: list[Incident] = field(default_factory=list)


def fingerprint(kind: str, *parts: str | None) -> str:
    """A stable name for a cause: ``kind:part:part...`` (``None`` parts are left out)."""
    return ":".join([kind, *(str(p) for p in parts if p is not None)])


# ----------------------------------------------------------------------------------------------
# Findings from checks, the gate, held runs and plugins
# ----------------------------------------------------------------------------------------------


def check_findings(
    pipeline: str, results: Iterable[CheckResult], min_severity: str = "warning"
) -> list[Finding]:
    """One finding per failed check result at ``min_severity`` or worse, fingerprinted
    ``check:CHECK:PIPELINE:SERIES`` (``check:CHECK:PIPELINE`` for run-level checks)."""
    out = []
    for r in results:
        if r.passed or not at_least(r.severity, min_severity):
            continue
        where = f"series {r.unique_id!r}" if r.unique_id is not None else "the run"
        out.append(
            Finding(
                fingerprint("check", r.check, pipeline, r.unique_id),
                "check",
                r.severity,
                f"{r.check} failed for {where} of pipeline {pipeline!r}",
                r.sentence,
            )
        )
    return out


def gate_findings(pipeline: str, decision: GateDecision) -> list[Finding]:
    """One finding per failed gate rule, ``gate:RULE:PIPELINE``; blocking rules are errors,
    rules that only warn are warnings."""
    return [
        Finding(
            fingerprint("gate", r.check, pipeline),
            "gate",
            Severity.ERROR if r.blocking else Severity.WARNING,
            f"gate rule {r.check} failed for pipeline {pipeline!r}",
            r.detail,
        )
        for r in decision.results
        if not r.passed
    ]


def held_finding(pipeline: str, run_id: str, reason: str, rules: Sequence[str] = ()) -> Finding:
    """The run was held: the pipeline keeps serving its last good release. ``held:PIPELINE``:
    the one incident of a hold, ``rules`` (the gate rules that held it) named in its title and
    ``reason`` (each rule's and stopping check's finding) as its detail."""
    named = f" by gate rule{'s' if len(rules) > 1 else ''} {', '.join(rules)}" if rules else ""
    return Finding(
        fingerprint("held", pipeline),
        "held",
        "error",
        f"pipeline {pipeline!r} is held{named}: run {run_id} was not published",
        reason,
    )


def failed_finding(pipeline: str, run_id: str, error: str) -> Finding:
    """The run failed: it could not finish (no data yet, an engine that broke, an internal
    error), so the pipeline published nothing new. ``failed:PIPELINE``: one incident however
    many runs fail in a row, resolved by the next run that finishes."""
    return Finding(
        fingerprint("failed", pipeline),
        "failed",
        "error",
        f"pipeline {pipeline!r} failed: run {run_id} did not finish",
        error,
    )


def sink_finding(pipeline: str, sink: str, release_id: str, error: str) -> Finding:
    """A sink could not take the current release: the release stays published and served, the
    sink still holds an older one until a later delivery succeeds. ``sink:PIPELINE:SINK``."""
    return Finding(
        fingerprint("sink", pipeline, sink),
        "sink",
        "error",
        f"sink {sink} of pipeline {pipeline!r} did not take release {release_id}",
        f"{error}; the release is published and served; the next run (or `steadycast sinks "
        f"retry {pipeline}`) delivers it again",
    )


def plugin_finding(pipeline: str, plugin: str, message: str) -> Finding:
    """A model plugin failed to load or broke its contract. ``plugin:PIPELINE:PLUGIN``."""
    return Finding(
        fingerprint("plugin", pipeline, plugin),
        "plugin",
        "warning",
        f"model plugin {plugin!r} failed in pipeline {pipeline!r}",
        message,
    )


# ----------------------------------------------------------------------------------------------
# The store
# ----------------------------------------------------------------------------------------------


def _row(row: sqlite3.Row) -> Incident:
    return Incident(**dict(row))


def _audit(
    con: sqlite3.Connection,
    action: str,
    actor: str,
    incident: Incident,
    reason: str | None,
    **extra: Any,
) -> None:
    """An audit entry in the open transaction, in ``control.audit``'s format."""
    detail = {
        "fingerprint": incident.fingerprint,
        "kind": incident.kind,
        "severity": incident.severity,
        "title": incident.title,
        "state": incident.state,
        **extra,
    }
    con.execute(
        "INSERT INTO audit (at, actor, action, pipeline, subject, reason, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            utcnow(),
            actor,
            action,
            incident.pipeline,
            f"incident:{incident.id}",
            reason,
            json.dumps(detail, default=str, sort_keys=True),
        ),
    )


def _check(kind: str, severity: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"incident kind {kind!r} is not one of {', '.join(KINDS)}")
    Severity.parse(severity, "incident severity")


def _raise(
    con: sqlite3.Connection,
    actor: str,
    pipeline: str,
    finding: Finding,
    run_id: str | None,
    now: str,
) -> tuple[Incident, bool]:
    live = con.execute(
        "SELECT * FROM incidents WHERE fingerprint = ? AND state != 'resolved'",
        (finding.fingerprint,),
    ).fetchone()
    if live is not None:
        severity = max(live["severity"], finding.severity, key=rank)
        con.execute(
            "UPDATE incidents SET last_seen = ?, occurrences = occurrences + 1, run_id = ?, "
            "severity = ?, title = ?, detail = ? WHERE id = ?",
            (now, run_id, severity, finding.title, finding.detail, live["id"]),
        )
        row = con.execute("SELECT * FROM incidents WHERE id = ?", (live["id"],)).fetchone()
        return _row(row), False
    cur = con.execute(
        "INSERT INTO incidents (fingerprint, pipeline, kind, severity, state, title, detail, "
        "first_seen, last_seen, occurrences, run_id) VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, 1, ?)",
        (
            finding.fingerprint,
            pipeline,
            finding.kind,
            finding.severity,
            finding.title,
            finding.detail,
            now,
            now,
            run_id,
        ),
    )
    row = con.execute("SELECT * FROM incidents WHERE id = ?", (cur.lastrowid,)).fetchone()
    incident = _row(row)
    _audit(con, "incident.opened", actor, incident, finding.detail or None, run_id=run_id)
    return incident, True


def _observe(
    con: sqlite3.Connection,
    actor: str,
    pipeline: str,
    run_id: str,
    seen: Collection[str],
    kinds: Collection[str],
    now: str,
) -> list[Incident]:
    if not kinds:
        return []
    marks = ",".join("?" for _ in kinds)
    rows = con.execute(
        f"SELECT * FROM incidents WHERE pipeline = ? AND state != 'resolved' AND kind IN ({marks})",
        (pipeline, *kinds),
    ).fetchall()
    seen_set = set(seen)
    resolved = []
    for row in rows:
        if row["fingerprint"] in seen_set:
            continue
        resolution = (
            f"cleared: run {run_id} passed its gate and was published"
            if row["kind"] == "held"
            else f"cause gone: not seen in run {run_id}"
        )
        con.execute(
            "UPDATE incidents SET state = 'resolved', resolved_by = ?, resolved_at = ?, "
            "resolution = ? WHERE id = ?",
            (actor, now, resolution, row["id"]),
        )
        incident = _row(
            con.execute("SELECT * FROM incidents WHERE id = ?", (row["id"],)).fetchone()
        )
        _audit(con, "incident.resolved", actor, incident, resolution, run_id=run_id, auto=True)
        resolved.append(incident)
    return resolved


def raise_incident(
    control_path: Path,
    fingerprint: str,
    pipeline: str,
    kind: str,
    severity: str,
    title: str,
    detail: str,
    run_id: str | None,
    *,
    actor: str | None = None,
) -> tuple[Incident, bool]:
    """Open an incident, or record another sighting of the live one with this fingerprint.

    Returns ``(incident, is_new)``. A sighting of an open or acknowledged incident bumps
    ``occurrences``, ``last_seen`` and ``run_id``, keeps the worse severity and takes the new
    title and detail. A resolved incident is history: the same fingerprint opens a new one.
    """
    _check(kind, severity)
    finding = Finding(fingerprint, kind, severity, title, detail)
    with connect(control_path) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            out = _raise(con, actor or current_actor(), pipeline, finding, run_id, utcnow())
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    return out


def observe_run(
    control_path: Path,
    pipeline: str,
    run_id: str,
    active_fingerprints: Collection[str],
    kinds: Collection[str],
    *,
    actor: str | None = None,
) -> list[Incident]:
    """Resolve the live incidents of ``kinds`` for ``pipeline`` whose cause this run looked for
    and did not find (fingerprint not in ``active_fingerprints``); returns them.

    Only pass the kinds the run actually evaluated: a run that failed before its checks must
    not resolve check incidents it never looked at.
    """
    with connect(control_path) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            out = _observe(
                con,
                actor or current_actor(),
                pipeline,
                run_id,
                active_fingerprints,
                kinds,
                utcnow(),
            )
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    return out


def record_findings(
    control_path: Path,
    pipeline: str,
    run_id: str,
    findings: Sequence[Finding],
    kinds: Collection[str],
    *,
    actor: str | None = None,
) -> IncidentChanges:
    """Everything a run saw, in one transaction: raise (or re-sight) an incident per finding,
    then resolve the live incidents of ``kinds`` that no finding named. Returns what changed,
    for alerts (``ops.alerts.notify``)."""
    for f in findings:
        _check(f.kind, f.severity)
    who = actor or current_actor()
    changes = IncidentChanges()
    with connect(control_path) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            now = utcnow()
            for f in findings:
                incident, is_new = _raise(con, who, pipeline, f, run_id, now)
                (changes.opened if is_new else changes.updated).append(incident)
            seen = {f.fingerprint for f in findings}
            changes.resolved = _observe(con, who, pipeline, run_id, seen, kinds, now)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    return changes


def get_incident(control_path: Path, incident_id: int) -> Incident:
    """One incident by id; an unknown id says how to list them."""
    with connect(control_path) as con:
        row = con.execute("SELECT * FROM incidents WHERE id = ?", (int(incident_id),)).fetchone()
    if row is None:
        raise NotFoundError(f"no incident {incident_id}; `steadycast incidents` lists them")
    return _row(row)


def _transition(
    control_path: Path,
    incident_id: int,
    target: Literal["acknowledged", "resolved"],
    actor: str | None,
    note: str | None,
) -> Incident:
    who = actor or current_actor()
    with connect(control_path) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute(
                "SELECT * FROM incidents WHERE id = ?", (int(incident_id),)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no incident {incident_id}; `steadycast incidents` lists them")
            state = row["state"]
            if state == target:  # already there: nothing changes, nothing to audit
                con.execute("ROLLBACK")
                return _row(row)
            if target == "acknowledged" and state == "resolved":
                raise UsageError(
                    f"incident {incident_id} is resolved ({row['resolution'] or 'no note'}); "
                    "there is nothing to acknowledge"
                )
            now = utcnow()
            if target == "acknowledged":
                con.execute(
                    "UPDATE incidents SET state = 'acknowledged', acknowledged_by = ?, "
                    "acknowledged_at = ?, acknowledge_note = ? WHERE id = ?",
                    (who, now, note, row["id"]),
                )
            else:
                con.execute(
                    "UPDATE incidents SET state = 'resolved', resolved_by = ?, resolved_at = ?, "
                    "resolution = ? WHERE id = ?",
                    (who, now, note or f"resolved by {who}", row["id"]),
                )
            incident = _row(
                con.execute("SELECT * FROM incidents WHERE id = ?", (row["id"],)).fetchone()
            )
            _audit(con, f"incident.{target}", who, incident, note, previous_state=state)
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    return incident


def acknowledge(
    control_path: Path, incident_id: int, actor: str | None = None, note: str | None = None
) -> Incident:
    """Someone is on it: open -> acknowledged (audited). Acknowledging twice changes nothing;
    a resolved incident cannot be acknowledged (UsageError)."""
    return _transition(control_path, incident_id, "acknowledged", actor, note)


def resolve(
    control_path: Path, incident_id: int, actor: str | None = None, note: str | None = None
) -> Incident:
    """Close an incident by hand (audited), from open or acknowledged. Resolving twice changes
    nothing. If the cause is still there, the next run opens a new incident."""
    return _transition(control_path, incident_id, "resolved", actor, note)


def list_incidents(
    control_path: Path, state: str | None = None, pipeline: str | None = None
) -> list[Incident]:
    """Incidents, newest first, optionally of one state and one pipeline."""
    if state is not None and state not in STATES:
        raise UsageError(f"state {state!r} is not one of {', '.join(STATES)}")
    where, args = [], []
    if state is not None:
        where.append("state = ?")
        args.append(state)
    if pipeline is not None:
        where.append("pipeline = ?")
        args.append(pipeline)
    sql = "SELECT * FROM incidents"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC"
    with connect(control_path) as con:
        return [_row(r) for r in con.execute(sql, args).fetchall()]
