"""The per-run HTML report: complete, self-contained, escaped, and honest about what is missing."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from steadycast.errors import NotFoundError
from steadycast.report import collect, render_report, write_report
from steadycast.storage.control import connect
from steadycast.workspace import Workspace
from tests.observability_workspace import (
    NASTY_ID,
    NASTY_RUN,
    real_run_workspace,
    record_run,
    recorded_workspace,
)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, str]:
    return recorded_workspace(tmp_path_factory.mktemp("report"))


class _Collect(HTMLParser):
    """Every tag and its attributes, and every script's source."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self.scripts.append(dict(attrs))


def _parse(page: str) -> _Collect:
    parser = _Collect()
    parser.feed(page)
    return parser


def test_report_has_every_section_and_the_run_facts(recorded: tuple[Workspace, str]) -> None:
    ws, run_id = recorded
    page = render_report(ws, run_id)
    for heading in (
        "What ran",
        "Gate decision",
        "Data quality",
        "Quarantine",
        "Model mix",
        "Backtest accuracy",
        "Realised accuracy",
        "Resource use by stage",
        "Resource use by model",
        "Forecasts",
    ):
        assert f"<h2>{heading}" in page
    assert "below_min" in page and "not_a_number" in page  # quarantine by reason
    assert "non-blocking rules that failed: total_jump" in page
    assert "flat for 30 h &lt;stuck meter?&gt;" in page
    assert html.escape("No actuals have arrived for this run's forecasts yet.") in page
    assert "fallback" in page and "88.9%" in page  # model mix: 8 of 9 selected
    assert page.count('class="plotly-graph-div"') == 2  # a sample and the worst series


def test_report_is_self_contained_with_plotly_inlined_once(
    recorded: tuple[Workspace, str],
) -> None:
    ws, run_id = recorded
    page = render_report(ws, run_id)
    parsed = _parse(page)
    assert all(s.get("src") is None for s in parsed.scripts)  # no script is fetched
    for tag, attrs in parsed.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            assert value is None or not re.match(r"(https?:)?//", value), (tag, attrs)
    assert "<link" not in page
    assert page.count("plotly.js v") == 1  # the library's banner: inlined exactly once


def test_every_user_string_is_escaped(recorded: tuple[Workspace, str]) -> None:
    ws, run_id = recorded
    page = render_report(ws, run_id)
    body = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert "<img" not in body and "<b>bold" not in body
    assert "meters-r&quot;&lt;img src=x onerror=alert(1)&gt;&#x27;&amp;" in body
    # Plot data is JSON inside a script; plotly escapes '<' there, so no tag can close it early.
    assert "<b>bold</b>" not in page and "onerror=alert(1)>" not in page
    assert not any(tag == "img" for tag, _ in _parse(page).tags)


def test_worst_series_are_ranked_by_backtest_score(recorded: tuple[Workspace, str]) -> None:
    ws, run_id = recorded
    data = collect(ws, run_id)
    # Scores grow with the series index; m2 is on a fallback without a score.
    assert data.worst_ids == ["m8", "m7", "m6"]
    assert data.worst_metric == "mase"
    assert NASTY_ID in data.sample_ids
    assert set(data.history["unique_id"]) == set(data.sample_ids + data.worst_ids)
    assert data.history.groupby("unique_id").size().max() == 72  # 3 seasons of 24 hours
    assert list(data.backtest["model"]) == ["Naive", "SeasonalNaive", "HistoricAverage", "SES"]


def test_unknown_run_is_named(recorded: tuple[Workspace, str], tmp_path: Path) -> None:
    ws, _ = recorded
    with pytest.raises(NotFoundError, match=r"no run 'nope\"<x>'"):
        write_report(ws, 'nope"<x>', tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_a_run_without_gate_or_release_still_renders(
    recorded: tuple[Workspace, str], tmp_path: Path
) -> None:
    ws, _ = recorded
    record_run(ws, "meters", "meters-failed-1", status="failed")
    with connect(ws.control_path) as con:
        con.execute("UPDATE runs SET error = 'boom <here>' WHERE run_id = 'meters-failed-1'")
    out = write_report(ws, "meters-failed-1", tmp_path / "sub" / "failed.html")
    page = out.read_text(encoding="utf-8")
    assert "No gate recorded for this run." in page
    assert "No forecasts were found for this run" in page
    assert "boom &lt;here&gt;" in page
    assert "plotly.js v" not in page  # no figure, no library
    assert [p.name for p in out.parent.iterdir()] == ["failed.html"]  # no temp file left


def test_held_gate_names_the_rules_that_tripped(recorded: tuple[Workspace, str]) -> None:
    ws, _ = recorded
    gate = [{"check": "non_finite", "passed": False, "detail": "3 NaN values"}]
    record_run(ws, "meters", "meters-held-1", status="held", gate=gate)
    page = render_report(ws, "meters-held-1")
    assert 'class="badge held">hold</span> tripped: non_finite.' in page


@pytest.mark.slow
def test_report_of_a_real_run(tmp_path: Path) -> None:
    ws, run_id = real_run_workspace(tmp_path)
    page = write_report(ws, run_id, tmp_path / "real.html").read_text(encoding="utf-8")
    assert "SeasonalNaive" in page and "snapshot" in page and "forecast" in page
    assert page.count('class="plotly-graph-div"') == 2
    assert NASTY_RUN not in page
