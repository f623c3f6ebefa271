"""The report page: one self-contained HTML file with its styles and plotly's JS inlined once.

The file must open from an e-mail attachment with no network, so nothing is linked: no CDN, no
web font, no image URL. The markup lives in ``templates/report.html.j2`` (Jinja2, autoescape
on); this module only turns a run's facts into plain values for it. Every value that came from
a user or their data (ids, reasons, messages) is escaped by the template environment, in one
place: its ``finalize`` escapes as ``html.escape`` does (``&#x27;``, ``&quot;``) and
autoescape catches anything else. Only plotly's own output enters the page as Markup.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from steadycast import __version__
from steadycast.report.data import ReportData
from steadycast.report.figures import figure_div, forecast_grid
from steadycast.storage.outcome import outcome

MAX_SHOWN = 50  # rows of a long table shown; the rest are counted
_BADGE = {"published": "ok", "approved": "ok", "held": "held", "failed": "failed"}


def _finalize(value: Any) -> Any:
    """What ``{{ value }}`` prints: Markup as it is, anything else as escaped text (None and
    NaN as nothing)."""
    if hasattr(value, "__html__"):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return Markup(escape(str(value), quote=True))


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("steadycast.report", "templates"),
        autoescape=True,
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _number(value: Any) -> Any:
    """A number as people read it (thousands separators, a few digits); other values as they
    are."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.01:
            return f"{value:.2g}"
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return value


@dataclass(frozen=True)
class Cell:
    text: Any
    numeric: bool


@dataclass(frozen=True)
class Table:
    """A table for the template; ``rows`` is None when there is nothing to show (``empty``)."""

    headers: list[str]
    rows: list[list[Cell]] | None
    empty: str = ""


def _cell(value: Any) -> Cell:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Cell(_number(value), True)
    return Cell(_number(value) if isinstance(value, bool) else value, False)


def _table(frame: pd.DataFrame | None, columns: Sequence[tuple[str, str]], empty: str) -> Table:
    """``columns``: (column, header) pairs; missing columns are left out."""
    if frame is None or frame.empty:
        return Table([], None, empty)
    cols = [(c, h) for c, h in columns if c in frame.columns]
    rows = [
        [_cell(_plain(v)) for v in row]
        for row in frame[[c for c, _ in cols]].itertuples(index=False)
    ]
    return Table([h for _, h in cols], rows, empty)


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones, so numbers are recognised and formatted."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, str) else value


def _all_columns(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return [(str(c), str(c).replace("_", " ")) for c in frame.columns]


def _duration(run: dict[str, Any]) -> str:
    if run.get("wall_s"):
        return f"{float(run['wall_s']):,.1f} s"
    try:
        start = datetime.fromisoformat(str(run["started_at"]))
        end = datetime.fromisoformat(str(run["finished_at"]))
    except (KeyError, TypeError, ValueError):
        return ""
    return f"{(end - start).total_seconds():,.1f} s"


def _summary(data: ReportData) -> dict[str, Any]:
    run = data.run
    status = str(run.get("status", ""))
    fields = [
        ("Pipeline", run.get("pipeline")),
        ("Run", run.get("run_id")),
        ("Started (UTC)", run.get("started_at")),
        ("Finished (UTC)", run.get("finished_at") or "not finished"),
        ("Duration", _duration(run)),
        ("Engine", run.get("engine")),
        ("Release", run.get("release_id") or "none"),
        ("Series", run.get("series")),
        ("On fallback", run.get("fallback_series")),
        ("Config SHA-256", run.get("config_sha256")),
        ("Host / pid", f"{run.get('host') or ''} / {run.get('pid') or ''}"),
    ]
    said = outcome(status, run.get("detail"))
    return {
        "status": status or "unknown",
        "badge": _BADGE.get(status, "other"),
        "said": said,
        "fields": [(k, _number(v)) for k, v in fields],
        "error": run.get("error") or "",
        # An approved run keeps the gate's reason for holding it: history, not an error now.
        "error_label": "Held because" if said.startswith("held, then") else "Error",
    }


GATE_COLUMNS = [
    ("check", "rule"),
    ("passed", "passed"),
    ("blocking", "blocking"),
    ("value", "value"),
    ("limit", "limit"),
    ("detail", "why"),
]


def _gate(data: ReportData) -> dict[str, Any] | None:
    if data.gate is None:
        return None
    failed = [str(r.get("check", "?")) for r in data.gate if not r.get("passed", True)]
    return {
        "passed": bool(data.gate_passed),
        "failed": ", ".join(failed),
        "table": _table(pd.DataFrame(data.gate), GATE_COLUMNS, "no rules ran"),
    }


FINDING_COUNT_COLUMNS = [("check", "check"), ("severity", "severity"), ("findings", "findings")]
FINDING_COLUMNS = [
    ("check", "check"),
    ("severity", "severity"),
    ("policy", "policy"),
    ("unique_id", "unique_id"),
    ("sentence", "finding"),
]


def _findings(data: ReportData) -> dict[str, Any]:
    """The failed data-quality checks: counted by check and severity, then the first few."""
    findings = data.findings
    if findings is None:
        return {"state": "unchecked"}
    if findings.empty:
        return {"state": "none"}
    failed = findings[~findings["passed"].astype(bool)]
    if failed.empty:
        return {"state": "passed", "total": f"{len(findings):,}"}
    counts = failed.groupby(["check", "severity"]).size().reset_index(name="findings")
    shown = failed.head(MAX_SHOWN)
    more = len(failed) - len(shown)
    return {
        "state": "failed",
        "counts": _table(counts, FINDING_COUNT_COLUMNS, ""),
        "shown": _table(shown, FINDING_COLUMNS, ""),
        "more": f"{more:,}" if more > 0 else "",
    }


def _realised(data: ReportData) -> Table:
    """Realised accuracy: mean per model and metric over the release's scored series."""
    frame = data.realised
    if frame.empty:
        return Table([], None)
    frame = frame.pivot_table(index="model", columns="metric", values="value", aggfunc="mean")
    frame = frame.reset_index()
    return _table(frame.head(MAX_SHOWN), _all_columns(frame), "")


STAGE_COLUMNS = [
    ("seq", "#"),
    ("name", "stage"),
    ("status", "status"),
    ("wall_s", "wall s"),
    ("cpu_s", "CPU s"),
    ("peak_rss_mb", "peak MB"),
    ("rows_in", "rows in"),
    ("rows_out", "rows out"),
    ("rows_rejected", "rejected"),
    ("series_in", "series in"),
    ("series_out", "series out"),
]
MODEL_COLUMNS = [
    ("model", "model"),
    ("tasks", "tasks"),
    ("failures", "failures"),
    ("cpu_s", "CPU s"),
    ("peak_rss_mb", "peak MB"),
]
QUARANTINE_COLUMNS = [
    ("reason", "reason"),
    ("rows", "rows"),
    ("series", "series"),
    ("batches", "batches"),
]
MIX_COLUMNS = [("model", "model"), ("source", "source"), ("series", "series"), ("share", "share")]


def _plots(data: ReportData) -> list[dict[str, Any]]:
    plots: list[dict[str, Any]] = []
    if data.sample_ids:
        fig = forecast_grid(data.history, data.forecasts, data.sample_ids, data.levels)
        plots.append(
            {
                "title": "A sample of series",
                "div": Markup(figure_div(fig, "steadycast-sample-series")),
            }
        )
    if data.worst_ids:
        metric = (data.worst_metric or "score").upper()
        titles = {
            uid: f"{uid} ({metric} {data.worst_scores[uid]:.3g})"
            if uid in data.worst_scores
            else uid
            for uid in data.worst_ids
        }
        fig = forecast_grid(data.history, data.forecasts, data.worst_ids, data.levels, titles)
        plots.append(
            {
                "title": f"The worst series by backtest {metric}",
                "div": Markup(figure_div(fig, "steadycast-worst-series")),
            }
        )
    return plots


def render(data: ReportData) -> str:
    """The whole page as a string: plotly's JS in the head only when there is a figure."""
    plots = _plots(data)
    models = data.models
    if not models.empty:
        models = models.sort_values("cpu_s", ascending=False)
    template = _environment().get_template("report.html.j2")
    page = template.render(
        title=f"steadycast run {data.run.get('run_id', '')} ({data.run.get('pipeline', '')})",
        version=__version__,
        plotly_js=Markup(get_plotlyjs()) if plots else None,
        run=_summary(data),
        gate_view=_gate(data),
        findings_view=_findings(data),
        quarantine=_table(
            data.quarantine, QUARANTINE_COLUMNS, "No rows quarantined in this pipeline's batches."
        ),
        model_mix=_table(data.model_mix, MIX_COLUMNS, "No provenance recorded for this run."),
        backtest=_table(
            data.backtest,
            _all_columns(data.backtest),
            "No backtest scores recorded for this run.",
        ),
        realised=_realised(data),
        stages=_table(data.stages, STAGE_COLUMNS, "No stages recorded."),
        models=_table(models, MODEL_COLUMNS, "No model usage recorded."),
        incidents=_table(data.incidents.head(MAX_SHOWN), _all_columns(data.incidents), "None."),
        notes=list(data.notes),
        plots=plots,
    )
    return str(page)
