"""How a run ended and what happened to it after: "held, then approved by NAME: REASON",
"published, then rolled back by NAME: REASON".

A run's ``status`` column says where its release stands now (an approved run is
``published``); that alone made screens show a green "published" beside the gate's hold
message, with no word of who overrode it. So every lever a person pulls on a run is kept in the
run's record (``detail["after"]``, a list of events, oldest first), and :func:`outcome` turns
status and events into the one sentence every screen shows: the report, the dashboard, the API,
``status`` and ``runs``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steadycast.storage.control import connect, utcnow

__all__ = ["outcome", "record_event", "run_of_release"]

#: Event kinds: a held run published by a person; its release replaced by a rollback; its
#: release made current again by a rollback.
EVENTS = ("approved", "rolled_back", "restored")


def record_event(
    control_path: Path, run_id: str, event: str, actor: str, reason: str, **extra: Any
) -> None:
    """Append a lever's event to the run's record, in one transaction (a read-modify-write of
    the run's ``detail`` that two processes must not interleave)."""
    if event not in EVENTS:
        raise ValueError(f"run event {event!r} is not one of {', '.join(EVENTS)}")
    entry = {"event": event, "by": actor, "reason": reason, "at": utcnow(), **extra}
    with connect(control_path) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute("SELECT detail FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                con.execute("ROLLBACK")
                return
            detail = _parse(row["detail"])
            detail["after"] = [*detail.get("after", []), entry]
            con.execute(
                "UPDATE runs SET detail = ? WHERE run_id = ?",
                (json.dumps(detail, default=str, sort_keys=True), run_id),
            )
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")


def run_of_release(control_path: Path, release_id: str | None) -> str | None:
    """The run that published ``release_id`` (``None`` when no run record names it)."""
    if release_id is None:
        return None
    with connect(control_path) as con:
        row = con.execute(
            "SELECT run_id FROM runs WHERE release_id = ? ORDER BY started_at DESC LIMIT 1",
            (release_id,),
        ).fetchone()
    return None if row is None else str(row["run_id"])


def outcome(status: str | None, detail: Any) -> str:
    """The sentence for a run: how it ended, then each lever pulled on it since.

    ``detail`` is the run's recorded detail, as stored (JSON text) or parsed.
    """
    events = [e for e in _parse(detail).get("after", []) if isinstance(e, dict)]
    approved = any(e.get("event") == "approved" for e in events)
    parts = ["held" if approved else str(status or "unknown")]
    for e in events:
        who = f"{e.get('by') or 'someone'}: {e.get('reason') or 'no reason given'}"
        if e.get("event") == "approved":
            parts.append(f"approved by {who}")
        elif e.get("event") == "rolled_back":
            parts.append(f"rolled back by {who} (release {e.get('to')} made current)")
        elif e.get("event") == "restored":
            parts.append(f"made current again, rolled back by {who}")
    return ", then ".join(parts)


def _parse(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return detail
    if not detail:
        return {}
    try:
        parsed = json.loads(detail)
    except (TypeError, ValueError):
        return {}  # an old free-text detail: no events recorded in it
    return parsed if isinstance(parsed, dict) else {}
