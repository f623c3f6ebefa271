"""The per-run HTML report: complete, self-contained, escaped, and honest about what is missing."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from steadycast.errors import NotFoundError
from steadycast.report import collect, render_report, write_report
from steadycast.report.html import render
from steadycast.storage import releases
from steadycast.storage.runlog import get_run
from tests.observability_workspace import (
    NASTY_ID,
    STUCK,
    Observed,
    real_run_workspace,
)
from tests.pipelines import CHEAP_MODELS

#: A run id no pipeline name allows, to test that the page escapes whatever a record holds.
NASTY_RUN = "meters-r\"<img src=x onerror=alert(1)>'&"


def _provenance(observed: Observed, run_id: str) -> pd.DataFrame:
    """The provenance published with the run's release (what the report's facts come from)."""
    release = releases.read_release(observed.ws.releases_dir, "meters", run_id)
    return pd.read_parquet(release.path / "provenance.parquet")


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


def test_report_has_every_section_and_the_run_facts(observed: Observed) -> None:
    page = render_report(observed.ws, observed.published)
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
    assert html.escape(f"series '{STUCK}': stuck at ") in page  # the flat-line finding
    assert html.escape(f"series {NASTY_ID!r}: outlier ") in page  # the spike
    assert html.escape("No actuals have arrived for this run's forecasts yet.") in page
    mix = _provenance(observed, observed.published).groupby(["model", "source"]).size()
    for (model, source), series in mix.items():
        share = f"{100 * series / mix.sum():.1f}%"
        assert f'<td>{model}</td><td>{source}</td><td class="num">{series}</td>' in page
        assert f"<td>{share}</td>" in page
    assert page.count('class="plotly-graph-div"') == 2  # a sample and the worst series


def test_report_is_self_contained_with_plotly_inlined_once(
    observed: Observed,
) -> None:
    page = render_report(observed.ws, observed.published)
    parsed = _parse(page)
    assert all(s.get("src") is None for s in parsed.scripts)  # no script is fetched
    for tag, attrs in parsed.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            assert value is None or not re.match(r"(https?:)?//", value), (tag, attrs)
    assert "<link" not in page
    assert page.count("plotly.js v") == 1  # the library's banner: inlined exactly once


def test_every_user_string_is_escaped(observed: Observed) -> None:
    page = render_report(observed.ws, observed.published)
    body = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert "<img" not in body and "<b>bold" not in body
    assert html.escape(NASTY_ID) in body  # the series id, in the findings
    # Plot data is JSON inside a script; plotly escapes '<' there, so no tag can close it early.
    assert "<b>bold</b>" not in page
    assert not any(tag == "img" for tag, _ in _parse(page).tags)


def test_a_hostile_run_record_is_escaped(observed: Observed) -> None:
    data = collect(observed.ws, observed.published)
    data.run["run_id"] = NASTY_RUN
    page = render(data)
    body = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert "meters-r&quot;&lt;img src=x onerror=alert(1)&gt;&#x27;&amp;" in body
    assert "onerror=alert(1)>" not in page
    assert not any(tag == "img" for tag, _ in _parse(page).tags)


def test_worst_series_are_ranked_by_backtest_score(observed: Observed) -> None:
    data = collect(observed.ws, observed.published)
    scored = _provenance(observed, observed.published).dropna(subset=["backtest_score"])
    ranked = scored.sort_values(["backtest_score", "unique_id"], ascending=[False, True])
    assert data.worst_ids == list(ranked["unique_id"].head(3))
    assert data.worst_metric == "mase"
    assert NASTY_ID in data.sample_ids + data.worst_ids
    assert STUCK not in data.sample_ids + data.worst_ids  # excluded: it has no forecast
    assert set(data.history["unique_id"]) == set(data.sample_ids + data.worst_ids)
    assert data.history.groupby("unique_id").size().max() == 72  # 3 seasons of 24 hours
    assert set(CHEAP_MODELS) <= set(data.backtest["model"])  # and their ensembles
    assert list(data.backtest["mase"]) == sorted(data.backtest["mase"])  # best first


def test_unknown_run_is_named(observed: Observed, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"no run 'nope\"<x>'"):
        write_report(observed.ws, 'nope"<x>', tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_a_failed_run_without_gate_or_release_still_renders(
    observed: Observed, tmp_path: Path
) -> None:
    out = write_report(observed.ws, observed.failed, tmp_path / "sub" / "failed.html")
    page = out.read_text(encoding="utf-8")
    error = get_run(observed.ws.control_path, observed.failed)["error"]
    assert "No gate recorded for this run." in page
    assert "No data-quality findings recorded for this run." in page  # it never checked
    assert "No forecasts were found for this run" in page
    assert html.escape(error) in page and "has no stored observations" in error
    assert "plotly.js v" not in page  # no figure, no library
    assert [p.name for p in out.parent.iterdir()] == ["failed.html"]  # no temp file left


def test_held_gate_names_the_rules_that_tripped(observed: Observed) -> None:
    page = render_report(observed.ws, observed.held)
    assert 'class="badge held">hold</span> tripped: total_jump.' in page
    # The forecasts the held run kept (for inspection and approval) are plotted.
    assert "No forecasts were found" not in page
    assert page.count('class="plotly-graph-div"') == 2


@pytest.mark.slow
def test_report_of_a_real_run(tmp_path: Path) -> None:
    ws, run_id = real_run_workspace(tmp_path)
    page = write_report(ws, run_id, tmp_path / "real.html").read_text(encoding="utf-8")
    assert "SeasonalNaive" in page and "snapshot" in page and "forecast" in page
    assert page.count('class="plotly-graph-div"') == 2
    assert NASTY_RUN not in page
