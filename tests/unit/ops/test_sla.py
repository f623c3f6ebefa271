"""SLA and freshness with a controllable clock: every call passes ``now``, and publish times are
audit entries written at chosen instants, so 08:59 and 09:01 are tested without waiting."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from steadycast.config import SlaConfig, parse_pipeline
from steadycast.errors import ConfigError
from steadycast.ingestion.batch import ingest
from steadycast.ops.incidents import list_incidents, record_findings
from steadycast.ops.sla import deadline_window, sla_findings, sla_state
from steadycast.storage.control import connect
from steadycast.workspace import Workspace

LONDON = ZoneInfo("Europe/London")
SLA = SlaConfig(deadline="09:00", timezone="Europe/London")
STALE_SLA = SlaConfig(deadline="09:00", timezone="Europe/London", max_data_age="36h")


def london(text: str) -> datetime:
    """A London wall-clock time as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


def record(ws: Workspace, action: str, when: datetime, pipeline: str = "meters") -> None:
    """An audit entry at a chosen instant, in the control plane's own time format."""
    with connect(ws.control_path) as con:
        con.execute(
            "INSERT INTO audit (at, actor, action, pipeline, subject) VALUES (?, 'test', ?, ?, ?)",
            (
                when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                action,
                pipeline,
                "r1",
            ),
        )


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    """A pipeline active since the 8th of June, published on time on the 8th and the 9th."""
    record(workspace, "ingest.ingested", london("2024-06-08T07:00"))
    record(workspace, "release.published", london("2024-06-08T08:00"))
    record(workspace, "release.published", london("2024-06-09T08:30"))
    return workspace


def test_before_the_deadline_the_previous_day_counts(ws: Workspace) -> None:
    state = sla_state(ws, "meters", SLA, london("2024-06-10T08:59"))
    assert state.state == state.deadline_state == "ok"
    assert state.deadline_at == datetime(2024, 6, 9, 8, 0, tzinfo=UTC)  # 09:00 BST
    assert state.published_at == london("2024-06-09T08:30")
    assert "on time for the 09:00 Europe/London deadline of 2024-06-09" in state.sentence
    assert sla_findings("meters", state) == []


def test_a_deadline_passed_without_a_publish_is_missed(ws: Workspace) -> None:
    state = sla_state(ws, "meters", SLA, london("2024-06-10T09:01"))
    assert state.state == "missed"
    assert state.deadline_at == datetime(2024, 6, 10, 8, 0, tzinfo=UTC)
    assert state.published_at is None
    assert state.last_publish_at == london("2024-06-09T08:30")
    assert state.sentence == (
        "nothing published for the 09:00 Europe/London deadline of 2024-06-10; "
        "last publish 2024-06-09 08:30"
    )
    [finding] = sla_findings("meters", state)
    assert (finding.fingerprint, finding.kind, finding.severity) == ("sla:meters", "sla", "error")
    assert "missed its deadline" in finding.title


def test_a_publish_after_the_deadline_is_late_for_that_day(ws: Workspace) -> None:
    record(ws, "release.published", london("2024-06-10T09:30"))
    at_0920 = sla_state(ws, "meters", SLA, london("2024-06-10T09:20"))
    assert at_0920.state == "missed"  # the clock has not reached the publish yet
    state = sla_state(ws, "meters", SLA, london("2024-06-10T09:45"))
    assert state.state == "late"
    assert state.lateness == timedelta(minutes=30)
    assert state.sentence == (
        "published 2024-06-10 09:30, 30min after the 09:00 Europe/London deadline of 2024-06-10"
    )
    [finding] = sla_findings("meters", state)
    assert (finding.fingerprint, finding.severity) == ("sla:meters", "warning")
    assert "published late" in finding.title
    # Still late for that day the next morning; the late publish does not serve the next day.
    assert sla_state(ws, "meters", SLA, london("2024-06-11T08:59")).state == "late"
    assert sla_state(ws, "meters", SLA, london("2024-06-11T09:01")).state == "missed"


def test_a_publish_before_the_deadline_is_on_time(ws: Workspace) -> None:
    record(ws, "release.published", london("2024-06-10T08:00"))
    state = sla_state(ws, "meters", SLA, london("2024-06-10T09:01"))
    assert state.state == "ok"
    assert state.published_at == london("2024-06-10T08:00")


def test_an_evening_publish_serves_the_next_mornings_deadline(ws: Workspace) -> None:
    record(ws, "release.published", london("2024-06-09T23:00"))
    assert sla_state(ws, "meters", SLA, london("2024-06-10T09:01")).state == "ok"
    start_end = deadline_window(SLA, london("2024-06-10T09:01"))
    assert start_end is not None
    deadline, start, end = start_end
    assert (start, end) == (deadline - timedelta(hours=12), deadline + timedelta(hours=12))


def test_a_publish_exactly_at_the_deadline_is_on_time(ws: Workspace) -> None:
    record(ws, "release.published", london("2024-06-10T09:00"))
    assert sla_state(ws, "meters", SLA, london("2024-06-10T09:00")).state == "ok"


def test_a_new_pipeline_is_not_judged_for_deadlines_before_it_existed(
    workspace: Workspace,
) -> None:
    assert sla_state(workspace, "meters", SLA, london("2024-06-10T08:59")).state == "none"
    record(workspace, "ingest.ingested", london("2024-06-10T08:30"))
    before = sla_state(workspace, "meters", SLA, london("2024-06-10T08:59"))
    assert before.state == "none"
    assert "first activity" in before.sentence
    after = sla_state(workspace, "meters", SLA, london("2024-06-10T09:01"))
    assert after.state == "missed"
    assert after.sentence.endswith("; never published")


def test_an_approval_is_a_publish_and_a_rollback_is_not(ws: Workspace) -> None:
    record(ws, "release.rollback", london("2024-06-10T08:00"))
    assert sla_state(ws, "meters", SLA, london("2024-06-10T09:01")).state == "missed"
    record(ws, "run.approved", london("2024-06-10T08:10"))
    assert sla_state(ws, "meters", SLA, london("2024-06-10T09:01")).state == "ok"


def test_other_pipelines_publishes_do_not_count(ws: Workspace) -> None:
    record(ws, "release.published", london("2024-06-10T08:00"), pipeline="other")
    assert sla_state(ws, "meters", SLA, london("2024-06-10T09:01")).state == "missed"


def test_the_deadline_follows_daylight_saving_time(workspace: Workspace) -> None:
    # London moved to BST on 2024-03-31: 09:00 local is 09:00 UTC before, 08:00 UTC after.
    before = deadline_window(SLA, datetime(2024, 3, 30, 12, tzinfo=UTC))
    after = deadline_window(SLA, datetime(2024, 3, 31, 12, tzinfo=UTC))
    assert before is not None and after is not None
    assert before[0] == datetime(2024, 3, 30, 9, tzinfo=UTC)
    assert after[0] == datetime(2024, 3, 31, 8, tzinfo=UTC)
    # The window of the first BST deadline starts halfway through the 23-hour gap before it.
    assert after[1] == datetime(2024, 3, 30, 20, 30, tzinfo=UTC)


def test_stale_data_is_its_own_finding(ws: Workspace) -> None:
    record(ws, "release.published", london("2024-06-10T08:00"))
    now = london("2024-06-10T12:00")
    fresh = sla_state(ws, "meters", STALE_SLA, now, newest=now - timedelta(hours=20))
    assert (fresh.state, fresh.freshness) == ("ok", "fresh")
    assert fresh.data_age == timedelta(hours=20)
    assert fresh.sentence.endswith("; newest data is 20h old")

    stale = sla_state(ws, "meters", STALE_SLA, now, newest=now - timedelta(days=2, hours=3))
    assert (stale.state, stale.deadline_state, stale.freshness) == ("stale", "ok", "stale")
    assert stale.sentence.endswith("; newest data is 2d 3h old, over the 36h allowed")
    [finding] = sla_findings("meters", stale)
    assert (finding.fingerprint, finding.severity) == ("sla:meters:stale", "warning")
    assert "stale (2d 3h old)" in finding.title


def test_missed_and_stale_give_two_findings_and_missed_wins_at_a_glance(
    ws: Workspace,
) -> None:
    now = london("2024-06-10T09:01")
    state = sla_state(ws, "meters", STALE_SLA, now, newest=now - timedelta(days=3))
    assert (state.state, state.deadline_state, state.freshness) == ("missed", "missed", "stale")
    assert [f.fingerprint for f in sla_findings("meters", state)] == [
        "sla:meters",
        "sla:meters:stale",
    ]


def test_freshness_reads_the_newest_observation_from_the_store(
    workspace: Workspace, make_pipeline: Callable[..., str], tmp_path: Path
) -> None:
    make_pipeline("meters")
    csv = tmp_path / "m.csv"
    pd.DataFrame(
        {
            "meter_id": ["a", "a", "b"],
            "timestamp": ["2024-06-01 00:00", "2024-06-01 01:00", "2024-06-01 05:00"],
            "kwh": [1.0, 2.0, 3.0],
        }
    ).to_csv(csv, index=False)
    ingest(workspace, "meters", [csv])
    sla = SlaConfig(max_data_age="36h")
    newest = datetime(2024, 6, 1, 5, tzinfo=UTC)
    fresh = sla_state(workspace, "meters", sla, newest + timedelta(hours=1))
    assert fresh.newest_observation == newest
    assert (fresh.state, fresh.freshness) == ("none", "fresh")  # no deadline set
    stale = sla_state(workspace, "meters", sla, newest + timedelta(hours=37))
    assert (stale.state, stale.freshness) == ("stale", "stale")
    unknown = sla_state(workspace, "nothing-here", sla, newest)
    assert unknown.freshness == "unknown"
    assert sla_findings("nothing-here", unknown) == []
    skipped = sla_state(workspace, "meters", sla, newest, read_store=False)
    assert skipped.freshness == "unknown"


def test_a_disabled_or_empty_sla_judges_nothing(ws: Workspace) -> None:
    now = london("2024-06-10T09:01")
    off = sla_state(
        ws, "meters", SlaConfig(deadline="09:00", enabled=False, max_data_age="1h"), now
    )
    assert (off.state, off.freshness, off.sentence) == ("none", "off", "SLA is disabled")
    empty = sla_state(ws, "meters", SlaConfig(), now)
    assert (empty.state, empty.sentence) == ("none", "no deadline set")
    assert sla_findings("meters", off) == sla_findings("meters", empty) == []


def test_the_clock_must_say_its_zone(ws: Workspace) -> None:
    with pytest.raises(ValueError, match=r"now must be timezone-aware .*datetime.now\(UTC\)"):
        sla_state(ws, "meters", SLA, datetime(2024, 6, 10, 9, 1))


def test_as_dict_is_json_ready(ws: Workspace) -> None:
    record(ws, "release.published", london("2024-06-10T09:30"))
    state = sla_state(
        ws, "meters", STALE_SLA, london("2024-06-10T10:00"), newest=london("2024-06-10T06:00")
    )
    assert state.as_dict() == {
        "pipeline": "meters",
        "state": "late",
        "deadline_state": "late",
        "freshness": "fresh",
        "deadline_at": "2024-06-10T08:00:00Z",
        "published_at": "2024-06-10T08:30:00Z",
        "last_publish_at": "2024-06-10T08:30:00Z",
        "lateness_s": 1800.0,
        "newest_observation": "2024-06-10T05:00:00Z",
        "data_age_s": 4 * 3600.0,
        "sentence": state.sentence,
        "now": "2024-06-10T09:00:00Z",
    }


def test_sla_incidents_open_and_resolve_with_the_state(ws: Workspace) -> None:
    missed = sla_state(ws, "meters", SLA, london("2024-06-10T09:01"))
    changes = record_findings(
        ws.control_path, "meters", "sla-check", sla_findings("meters", missed), ["sla"]
    )
    assert [i.fingerprint for i in changes.opened] == ["sla:meters"]
    record(ws, "release.published", london("2024-06-10T09:30"))
    late = sla_state(ws, "meters", SLA, london("2024-06-10T09:45"))
    changes = record_findings(
        ws.control_path, "meters", "sla-check", sla_findings("meters", late), ["sla"]
    )
    assert [(i.fingerprint, i.occurrences, i.severity) for i in changes.updated] == [
        ("sla:meters", 2, "error")  # the worse severity of the same cause is kept
    ]
    record(ws, "release.published", london("2024-06-11T08:00"))
    ok = sla_state(ws, "meters", SLA, london("2024-06-11T09:01"))
    assert ok.state == "ok"
    changes = record_findings(
        ws.control_path, "meters", "sla-check", sla_findings("meters", ok), ["sla"]
    )
    assert [i.fingerprint for i in changes.resolved] == ["sla:meters"]
    assert all(i.state == "resolved" for i in list_incidents(ws.control_path, pipeline="meters"))


MINIMAL = {
    "source": {"id_column": "id", "time_column": "t", "value_column": "v"},
    "series": {"frequency": "1h", "horizon": 24},
}


def test_sla_config_has_defaults_and_parses() -> None:
    cfg = parse_pipeline(MINIMAL, "meters", "pipelines/meters.toml")
    assert cfg.sla == SlaConfig()
    assert (cfg.sla.enabled, cfg.sla.deadline, cfg.sla.timezone, cfg.sla.max_data_age) == (
        True,
        "",
        "UTC",
        "",
    )
    cfg = parse_pipeline(
        {**MINIMAL, "sla": {"deadline": "7:30", "timezone": "Asia/Tokyo", "max_data_age": "2D"}},
        "meters",
        "pipelines/meters.toml",
    )
    assert cfg.sla.deadline_time == (7, 30)
    assert cfg.sla.max_age == pd.Timedelta(days=2)


@pytest.mark.parametrize(
    ("deadline", "expected"),
    [("09:00", (9, 0)), ("7:30", (7, 30)), ("23:59", (23, 59)), ("00:00", (0, 0))],
)
def test_a_deadline_is_hh_mm_on_a_24_hour_clock(deadline: str, expected: tuple[int, int]) -> None:
    cfg = parse_pipeline({**MINIMAL, "sla": {"deadline": deadline}}, "meters", "m.toml")
    assert cfg.sla.deadline_time == expected


@pytest.mark.parametrize("deadline", ["24:00", "09:60", "0900", "09", "09:00:00", "9:5", "09:00Z"])
def test_other_spellings_of_a_deadline_are_refused(deadline: str) -> None:
    with pytest.raises(ConfigError, match=rf"sla.deadline: '{deadline}' is not a time of day"):
        parse_pipeline({**MINIMAL, "sla": {"deadline": deadline}}, "meters", "m.toml")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"deadline": "25:00"},
            r"pipelines/meters.toml: sla.deadline: '25:00' is not a time of day; "
            r"use HH:MM on a 24-hour clock, such as '09:00'",
        ),
        ({"deadline": "9am"}, r"sla.deadline: '9am' is not a time of day"),
        ({"timezone": "London"}, r"sla.timezone: 'London' is not a time zone; use an IANA name"),
        ({"max_data_age": "soon"}, r"sla.max_data_age: 'soon' is not a duration; use a pandas"),
        ({"max_data_age": "-1h"}, r"max_data_age '-1h' must be a positive duration"),
        ({"dealine": "09:00"}, r"sla.dealine: unknown key"),
    ],
)
def test_bad_sla_config_names_the_key_and_the_fix(table: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_pipeline({**MINIMAL, "sla": table}, "meters", "pipelines/meters.toml")
