"""The report page: one self-contained HTML file with its styles and plotly's JS inlined once.

The file must open from an e-mail attachment with no network, so nothing is linked: no CDN, no
web font, no image URL. Every string that came from a user or their data (ids, reasons, messages)
goes through ``html.escape`` here, in one place: ``_cell`` and ``_text`` are the only ways text
enters the page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Any

import pandas as pd
from plotly.offline import get_plotlyjs

from steadycast import __version__
from steadycast.report.data import ReportData
from steadycast.report.figures import figure_div, forecast_grid
from steadycast.storage.outcome import outcome

STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px;
       color: #222; max-width: 1100px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
.badge { display: inline-block; padding: 2px 8px; border-radius: 3px; color: #fff;
         font-weight: 600; font-size: 13px; }
.ok { background: #2e7d32; } .held { background: #ef6c00; } .failed { background: #c62828; }
.other { background: #616161; }
.muted { color: #777; } .error { color: #c62828; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; font-size: 14px; }
dt { font-weight: 600; } dd { margin: 0; }
"""

MAX_SHOWN = 50  # rows of a long table shown; the rest are counted
_BADGE = {"published": "ok", "approved": "ok", "held": "held", "failed": "failed"}


def _text(value: Any) -> str:
    """Any value as escaped text; None and NaN as an empty cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return escape(str(value), quote=True)


def _number(value: Any) -> str:
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
    return _text(value)


def _cell(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<td class="num">{_number(value)}</td>'
    return f"<td>{_number(value) if isinstance(value, bool) else _text(value)}</td>"


def _table(frame: pd.DataFrame | None, columns: Sequence[tuple[str, str]], empty: str) -> str:
    """``columns``: (column, header) pairs; missing columns are left out."""
    if frame is None or frame.empty:
        return f'<p class="muted">{_text(empty)}</p>'
    cols = [(c, h) for c, h in columns if c in frame.columns]
    head = "".join(f"<th>{_text(h)}</th>" for _, h in cols)
    body = []
    for row in frame[[c for c, _ in cols]].itertuples(index=False):
        body.append("<tr>" + "".join(_cell(_plain(v)) for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


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


def _summary(data: ReportData) -> str:
    run = data.run
    status = str(run.get("status", ""))
    badge = _BADGE.get(status, "other")
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
    items = "".join(f"<dt>{_text(k)}</dt><dd>{_number(v)}</dd>" for k, v in fields)
    said = outcome(status, run.get("detail"))
    error = ""
    if run.get("error"):
        # An approved run keeps the gate's reason for holding it: history, not an error now.
        label = "Held because" if said.startswith("held, then") else "Error"
        error = f'<p class="error"><b>{label}:</b> {_text(run["error"])}</p>'
    return (
        f'<p><span class="badge {badge}">{_text(status or "unknown")}</span> '
        f'<span class="outcome">{_text(said)}</span></p>'
        f"<dl>{items}</dl>{error}"
    )


def _gate_section(data: ReportData) -> str:
    if data.gate is None:
        return '<p class="muted">No gate recorded for this run.</p>'
    failed = [str(r.get("check", "?")) for r in data.gate if not r.get("passed", True)]
    if data.gate_passed:
        verdict = '<p><span class="badge ok">publish</span> every blocking rule passed'
        if failed:
            verdict += f"; non-blocking rules that failed: {_text(', '.join(failed))}"
        verdict += ".</p>"
    else:
        verdict = (
            '<p><span class="badge held">hold</span> tripped: '
            f"{_text(', '.join(failed) or 'see below')}.</p>"
        )
    frame = pd.DataFrame(data.gate)
    cols = [
        ("check", "rule"),
        ("passed", "passed"),
        ("blocking", "blocking"),
        ("value", "value"),
        ("limit", "limit"),
        ("detail", "why"),
    ]
    return verdict + _table(frame, cols, "no rules ran")


FINDING_COUNT_COLUMNS = [("check", "check"), ("severity", "severity"), ("findings", "findings")]
FINDING_COLUMNS = [
    ("check", "check"),
    ("severity", "severity"),
    ("policy", "policy"),
    ("unique_id", "unique_id"),
    ("sentence", "finding"),
]


def _findings_section(data: ReportData) -> str:
    """The failed data-quality checks: counted by check and severity, then the first few."""
    findings = data.findings
    if findings is None:
        return _muted("No data-quality findings recorded for this run.")
    if findings.empty:
        return "<p>Every data-quality check passed.</p>"
    failed = findings[~findings["passed"].astype(bool)]
    if failed.empty:
        return f"<p>All {len(findings):,} check results passed.</p>"
    counts = failed.groupby(["check", "severity"]).size().reset_index(name="findings")
    summary = _table(counts, FINDING_COUNT_COLUMNS, "")
    shown = failed.head(MAX_SHOWN)
    more = len(failed) - len(shown)
    tail = f'<p class="muted">and {more:,} more</p>' if more > 0 else ""
    return summary + _table(shown, FINDING_COLUMNS, "") + tail


def _realised_section(data: ReportData) -> str:
    """Realised accuracy: mean per model and metric over the release's scored series."""
    frame = data.realised
    if frame.empty:
        return _muted("No actuals have arrived for this run's forecasts yet.")
    frame = frame.pivot_table(index="model", columns="metric", values="value", aggfunc="mean")
    frame = frame.reset_index()
    return _table(frame.head(MAX_SHOWN), _all_columns(frame), "")


def _muted(text: str) -> str:
    return f'<p class="muted">{_text(text)}</p>'


def _incidents_section(data: ReportData) -> str:
    if data.incidents.empty:
        return _muted("None.")
    return _table(data.incidents.head(MAX_SHOWN), _all_columns(data.incidents), "")


def _quarantine_section(data: ReportData) -> str:
    cols = [("reason", "reason"), ("rows", "rows"), ("series", "series"), ("batches", "batches")]
    return _table(data.quarantine, cols, "No rows quarantined in this pipeline's batches.")


def _model_mix_section(data: ReportData) -> str:
    cols = [("model", "model"), ("source", "source"), ("series", "series"), ("share", "share")]
    return _table(data.model_mix, cols, "No provenance recorded for this run.")


def _backtest_section(data: ReportData) -> str:
    frame = data.backtest
    return _table(frame, _all_columns(frame), "No backtest scores recorded for this run.")


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


def _stages_section(data: ReportData) -> str:
    return _table(data.stages, STAGE_COLUMNS, "No stages recorded.")


def _models_section(data: ReportData) -> str:
    models = data.models
    if not models.empty:
        models = models.sort_values("cpu_s", ascending=False)
    return _table(models, MODEL_COLUMNS, "No model usage recorded.")


def _plots(data: ReportData) -> tuple[str, bool]:
    parts: list[str] = []
    if data.sample_ids:
        fig = forecast_grid(data.history, data.forecasts, data.sample_ids, data.levels)
        parts.append("<h3>A sample of series</h3>" + figure_div(fig, "steadycast-sample-series"))
    if data.worst_ids:
        metric = (data.worst_metric or "score").upper()
        titles = {
            uid: f"{uid} ({metric} {data.worst_scores[uid]:.3g})"
            if uid in data.worst_scores
            else uid
            for uid in data.worst_ids
        }
        fig = forecast_grid(data.history, data.forecasts, data.worst_ids, data.levels, titles)
        parts.append(
            f"<h3>The worst series by backtest {_text(metric)}</h3>"
            + figure_div(fig, "steadycast-worst-series")
        )
    if not parts:
        return '<p class="muted">No forecasts to plot.</p>', False
    return "".join(parts), True


def render(data: ReportData) -> str:
    """The whole page as a string: plotly's JS in the head only when there is a figure."""
    plots, has_figures = _plots(data)
    notes = "".join(f'<p class="muted">{_text(n)}</p>' for n in data.notes)
    sections = [
        ("What ran", _summary(data)),
        ("Gate decision", _gate_section(data)),
        ("Data quality", _findings_section(data)),
        ("Quarantine", _quarantine_section(data)),
        ("Model mix", _model_mix_section(data)),
        ("Backtest accuracy (mean over series and windows)", _backtest_section(data)),
        ("Realised accuracy", _realised_section(data)),
        ("Resource use by stage", _stages_section(data)),
        ("Resource use by model", _models_section(data)),
        ("Incidents raised by this run", _incidents_section(data)),
        ("Forecasts", notes + plots),
    ]
    body = "".join(f"<section><h2>{_text(t)}</h2>{html}</section>" for t, html in sections)
    script = f'<script type="text/javascript">{get_plotlyjs()}</script>' if has_figures else ""
    return _page(
        f"steadycast run {data.run.get('run_id', '')} ({data.run.get('pipeline', '')})",
        script,
        body,
    )


def _page(title: str, script: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_text(title)}</title><style>{STYLE}</style>{script}</head>"
        f"<body><h1>{_text(title)}</h1>{body}"
        f'<p class="muted">Made by steadycast {_text(__version__)}.</p></body></html>\n'
    )
