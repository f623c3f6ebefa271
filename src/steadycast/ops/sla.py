"""SLA and freshness: was a pipeline's forecast out by its deadline, and is its data fresh?

A pipeline may declare a daily deadline (``[sla] deadline = "09:00"`` in ``timezone``) and a
maximum data age (``max_data_age = "36h"``). :func:`sla_state` says, at a given moment, how the
pipeline stands; :func:`sla_findings` turns that into incidents (kind ``sla``).

The clock is always an argument. Nothing here reads the wall clock: the caller passes ``now``
(``datetime.now(UTC)`` in production, any instant in tests), so every rule can be tested at
08:59 and at 09:01 without waiting or patching.

Deadlines and the publish that serves them
------------------------------------------

The deadline happens once per local day, at ``deadline`` in ``timezone`` (so it follows
daylight-saving changes; a deadline inside a spring-forward gap falls at the same wall time read
with the offset before the change). Each occurrence ``d`` owns a *window* that runs from the
midpoint between the previous occurrence and ``d`` to the midpoint between ``d`` and the next one
(for a daily deadline: 12 hours either side). Every publish falls in exactly one window, so it
serves exactly one deadline: at or before ``d`` it is *on time*, after ``d`` it is *late* for
``d``. A publish at 23:00 the evening before a 09:00 deadline serves that deadline (on time); one
at 09:30 serves it late; one at 22:00, more than 12 hours after, already serves the next day's.

A *publish* is a release made current by a run (audit action ``release.published``) or by the
approval of a held run (``run.approved``). A rollback is not a publish: it serves old forecasts.
Publish times come from the audit log of the control plane, so ``status`` can answer while a run
holds the store.

The deadline state at ``now`` is about the latest deadline that has passed (``deadline_at``):

- ``ok``: a publish in its window at or before it;
- ``late``: no publish on time, but one after it (and before ``now``);
- ``missed``: no publish in its window yet;
- ``none``: nothing to judge: SLA disabled, no deadline set, or the deadline passed before the
  pipeline's first recorded activity (ingest, run: its first audit entry), so a new pipeline is
  not reported for the days before it existed.

A ``missed`` state turns ``late`` when the publish finally comes (within the window), and the
next deadline starts afresh. A pipeline that is late every day therefore reads ``missed`` from the
deadline until its publish and ``late`` after it, one live incident throughout.

Freshness
---------

``data_age`` is ``now`` minus the newest stored observation's timestamp (``ds``, UTC) of the
pipeline. Over ``max_data_age`` the data is ``stale``; with no observations it is ``unknown``
(no incident: a pipeline without data is already reported by its deadline); without
``max_data_age`` it is ``off``.

At a glance, ``state`` is the worst of the two, in the order
``missed > stale > late > ok > none``.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from steadycast.config import SlaConfig
from steadycast.errors import StoreBusyError, WorkspaceError
from steadycast.ingestion.timegrid import in_range_sql
from steadycast.ops.incidents import Finding, fingerprint
from steadycast.storage import control, store
from steadycast.workspace import Workspace

__all__ = [
    "PUBLISH_ACTIONS",
    "SlaState",
    "deadline_window",
    "newest_observation",
    "publish_times",
    "sla_findings",
    "sla_state",
]

# Audit actions that make fresh forecasts current (a rollback serves old ones, so it is not here).
PUBLISH_ACTIONS: tuple[str, ...] = ("release.published", "run.approved")

_ORDER = ("none", "ok", "late", "stale", "missed")  # at a glance: the worst wins
_AUDIT_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # the control plane's one time format (control.utcnow)


@dataclass(frozen=True)
class SlaState:
    """Where a pipeline stands against its deadline and its data age, at one instant.

    Times are aware datetimes in UTC. ``published_at`` is the first publish that served
    ``deadline_at`` (None when it was missed); ``last_publish_at`` is the newest publish at or
    before ``now`` whatever deadline it served.
    """

    pipeline: str
    state: str  # missed | stale | late | ok | none: the worst of the two below
    deadline_state: str  # ok | late | missed | none
    freshness: str  # fresh | stale | unknown | off
    deadline_at: datetime | None
    published_at: datetime | None
    last_publish_at: datetime | None
    newest_observation: datetime | None
    data_age: timedelta | None
    sentence: str
    now: datetime

    @property
    def lateness(self) -> timedelta | None:
        """How long after its deadline the serving publish came (None unless late)."""
        if self.deadline_state != "late" or self.published_at is None or self.deadline_at is None:
            return None
        return self.published_at - self.deadline_at

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 UTC strings, durations in seconds."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat().replace("+00:00", "Z") if value is not None else None

        late = self.lateness
        return {
            "pipeline": self.pipeline,
            "state": self.state,
            "deadline_state": self.deadline_state,
            "freshness": self.freshness,
            "deadline_at": iso(self.deadline_at),
            "published_at": iso(self.published_at),
            "last_publish_at": iso(self.last_publish_at),
            "lateness_s": late.total_seconds() if late is not None else None,
            "newest_observation": iso(self.newest_observation),
            "data_age_s": self.data_age.total_seconds() if self.data_age is not None else None,
            "sentence": self.sentence,
            "now": iso(self.now),
        }


# ----------------------------------------------------------------------------------------------
# Time helpers
# ----------------------------------------------------------------------------------------------


def _utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{what} must be timezone-aware (pass datetime.now(UTC), not datetime.now())"
        )
    return value.astimezone(UTC)


def _occurrence(day: date, hour: int, minute: int, zone: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)


def deadline_window(sla: SlaConfig, now: datetime) -> tuple[datetime, datetime, datetime] | None:
    """The latest deadline passed at ``now`` and its window ``(start, end]``, all UTC.

    The window runs from the midpoint with the previous occurrence to the midpoint with the next
    one (see the module docstring); None when there is no deadline.
    """
    hhmm = sla.deadline_time
    if hhmm is None:
        return None
    now = _utc(now, "now")
    zone = zoneinfo.ZoneInfo(sla.timezone)
    today = now.astimezone(zone).date()
    occurrences = sorted(_occurrence(today + timedelta(days=k), *hhmm, zone) for k in range(-3, 3))
    i = max(k for k, d in enumerate(occurrences) if d <= now)
    previous, latest, following = occurrences[i - 1], occurrences[i], occurrences[i + 1]
    return latest, latest - (latest - previous) / 2, latest + (following - latest) / 2


def _human(delta: timedelta) -> str:
    """A duration the way a person says it: 45min, 3h 30min, 2d 4h."""
    minutes = int(abs(delta).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if hours:
        parts.append(f"{hours}h")
    if mins and not days:
        parts.append(f"{mins}min")
    return " ".join(parts) or "0min"


def _local(value: datetime, zone: zoneinfo.ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")


# ----------------------------------------------------------------------------------------------
# Reading what happened
# ----------------------------------------------------------------------------------------------


def _parse_audit_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def publish_times(
    control_path: Path, pipeline: str, start: datetime | None, end: datetime
) -> list[datetime]:
    """Times (UTC, ascending) the pipeline published in ``(start, end]``; no ``start``: all."""
    low = _utc(start, "start").strftime(_AUDIT_TIME) if start is not None else ""
    high = _utc(end, "end").strftime(_AUDIT_TIME)
    marks = ",".join("?" for _ in PUBLISH_ACTIONS)
    with control.connect(control_path) as con:
        rows = con.execute(
            f"SELECT at FROM audit WHERE pipeline = ? AND action IN ({marks}) "
            "AND at > ? AND at <= ? ORDER BY at",
            (pipeline, *PUBLISH_ACTIONS, low, high),
        ).fetchall()
    return [_parse_audit_time(r[0]) for r in rows]


def _last_publish(control_path: Path, pipeline: str, now: datetime) -> datetime | None:
    marks = ",".join("?" for _ in PUBLISH_ACTIONS)
    with control.connect(control_path) as con:
        row = con.execute(
            f"SELECT max(at) FROM audit WHERE pipeline = ? AND action IN ({marks}) AND at <= ?",
            (pipeline, *PUBLISH_ACTIONS, now.strftime(_AUDIT_TIME)),
        ).fetchone()
    return _parse_audit_time(row[0]) if row and row[0] else None


def _first_activity(control_path: Path, pipeline: str) -> datetime | None:
    """When the pipeline first did anything recorded (its first audit entry)."""
    with control.connect(control_path) as con:
        row = con.execute("SELECT min(at) FROM audit WHERE pipeline = ?", (pipeline,)).fetchone()
    return _parse_audit_time(row[0]) if row and row[0] else None


def newest_observation(store_path: Path, pipeline: str, *, wait_s: float = 2.0) -> datetime | None:
    """The newest stored observation time of a pipeline (UTC), or None when there is none or
    the store is busy: freshness is then reported as unknown rather than making ``status`` wait
    on a long write."""
    try:
        with store.reading(store_path, wait_s=wait_s) as con:
            row = con.execute(
                f"SELECT max(ds) FROM observations WHERE pipeline = ? AND {in_range_sql('ds')}",
                [pipeline],
            ).fetchone()
    except (StoreBusyError, WorkspaceError):
        return None
    if not row or row[0] is None:
        return None
    return _as_utc(row[0])


def _as_utc(value: datetime) -> datetime:
    """Store times are naive UTC; aware ones are converted."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ----------------------------------------------------------------------------------------------
# The state
# ----------------------------------------------------------------------------------------------


def _deadline_part(
    control_path: Path, pipeline: str, sla: SlaConfig, now: datetime
) -> tuple[str, datetime | None, datetime | None, str]:
    """(deadline_state, deadline_at, published_at, sentence)."""
    if not sla.enabled:
        return "none", None, None, "SLA is disabled"
    window = deadline_window(sla, now)
    if window is None:
        return "none", None, None, "no deadline set"
    deadline_at, start, end = window
    zone = zoneinfo.ZoneInfo(sla.timezone)
    hour, minute = sla.deadline_time or (0, 0)
    day = f"{deadline_at.astimezone(zone):%Y-%m-%d}"
    when = f"the {hour:02d}:{minute:02d} {sla.timezone} deadline of {day}"
    first = _first_activity(control_path, pipeline)
    if first is None:
        return "none", deadline_at, None, "nothing recorded for the pipeline yet: not judged"
    if first > deadline_at:
        return "none", deadline_at, None, f"T{when[1:]} came before the pipeline's first activity"
    served = publish_times(control_path, pipeline, start, min(now, end))
    on_time = [p for p in served if p <= deadline_at]
    if on_time:
        p = on_time[0]
        return "ok", deadline_at, p, f"published {_local(p, zone)}, on time for {when}"
    if served:
        p = served[0]
        return (
            "late",
            deadline_at,
            p,
            f"published {_local(p, zone)}, {_human(p - deadline_at)} after {when}",
        )
    return "missed", deadline_at, None, f"nothing published for {when}"


def sla_state(
    ws: Workspace,
    pipeline: str,
    sla: SlaConfig,
    now: datetime,
    *,
    newest: datetime | None = None,
    read_store: bool = True,
) -> SlaState:
    """Where ``pipeline`` stands at ``now`` against its deadline and its maximum data age.

    ``now`` must be timezone-aware. ``newest`` is the newest observation time when the caller
    already knows it (a run does, from its snapshot); otherwise, and only when ``max_data_age`` is
    set, it is read from the store with a short wait (``read_store=False`` never touches it).
    """
    now = _utc(now, "now")
    deadline_state, deadline_at, published_at, sentence = _deadline_part(
        ws.control_path, pipeline, sla, now
    )
    last = _last_publish(ws.control_path, pipeline, now)
    if deadline_state == "missed":
        zone = zoneinfo.ZoneInfo(sla.timezone)
        sentence += f"; last publish {_local(last, zone)}" if last else "; never published"

    max_age = sla.max_age if sla.enabled else None
    if newest is None and max_age is not None and read_store:
        newest = newest_observation(ws.store_path, pipeline)
    newest_utc = _as_utc(newest) if newest is not None else None
    age = now - newest_utc if newest_utc is not None else None
    if max_age is None:
        freshness = "off"
    elif age is None:
        freshness = "unknown"
        sentence += "; data age unknown (no observations found)"
    elif age > max_age:
        freshness = "stale"
        sentence += f"; newest data is {_human(age)} old, over the {sla.max_data_age} allowed"
    else:
        freshness = "fresh"
        sentence += f"; newest data is {_human(age)} old"

    candidates = [deadline_state, "stale" if freshness == "stale" else "none"]
    state = max(candidates, key=_ORDER.index)
    return SlaState(
        pipeline=pipeline,
        state=state,
        deadline_state=deadline_state,
        freshness=freshness,
        deadline_at=deadline_at,
        published_at=published_at,
        last_publish_at=last,
        newest_observation=newest_utc,
        data_age=age,
        sentence=sentence,
        now=now,
    )


def sla_findings(pipeline: str, state: SlaState) -> list[Finding]:
    """Incidents for an SLA state: ``sla:PIPELINE`` for a missed (error) or late (warning)
    deadline, ``sla:PIPELINE:stale`` for stale data (warning). An empty list means the cause is
    gone: record it with ``kinds=["sla"]`` so live SLA incidents resolve themselves."""
    found = []
    if state.deadline_state in ("missed", "late"):
        word = "missed its deadline" if state.deadline_state == "missed" else "published late"
        found.append(
            Finding(
                fingerprint("sla", pipeline),
                "sla",
                "error" if state.deadline_state == "missed" else "warning",
                f"pipeline {pipeline!r} {word}",
                state.sentence,
            )
        )
    if state.freshness == "stale":
        age = _human(state.data_age) if state.data_age is not None else "?"
        found.append(
            Finding(
                fingerprint("sla", pipeline, "stale"),
                "sla",
                "warning",
                f"data of pipeline {pipeline!r} is stale ({age} old)",
                state.sentence,
            )
        )
    return found
