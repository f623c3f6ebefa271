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
    error = ""
    if run.get("error"):
        error = f'<p class="error"><b>Error:</b> {_text(run["error"])}</p>'
    return (
        f'<p><span class="badge {badge}">{_text(status or "unknown")}</span></p>'
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


def _findings_section(data: ReportData) -> str:
    findings = data.findings
    if findings is None:
        return '<p class="muted">No data-quality findings recorded for this run.</p>'
    if findings.empty:
        return "<p>Every data-quality check passed.</p>"
    failed = findings[~findings["passed"].astype(bool)] if "passed" in findings else findings
    if failed.empty:
        return f"<p>All {len(findings):,} check results passed.</p>"
    by = [c for c in ("check", "severity") if c in failed.columns]
    summary = ""
    if by:
        counts = failed.groupby(by).size().reset_index(name="findings")
        summary = _table(counts, [*_all_columns(counts[by]), ("findings", "findings")], "")
    text_col = next((c for c in ("sentence", "detail", "message") if c in failed.columns), None)
    cols = [(c, c) for c in ("check", "severity", "policy", "unique_id") if c in failed.columns]
    if text_col:
        cols.append((text_col, "finding"))
    shown = failed.head(MAX_SHOWN)
    more = len(failed) - len(shown)
    tail = f'<p class="muted">and {more:,} more</p>' if more > 0 else ""
    return summary + _table(shown, cols, "") + tail


def _optional(frame: pd.DataFrame | None, missing: str, empty: str) -> str:
    if frame is None:
        return f'<p class="muted">{_text(missing)}</p>'
    if frame.empty:
        return f'<p class="muted">{_text(empty)}</p>'
    if {"model", "metric", "value"} <= set(frame.columns):
        frame = frame.pivot_table(index="model", columns="metric", values="value", aggfunc="mean")
        frame = frame.reset_index()
    return _table(frame.head(MAX_SHOWN), _all_columns(frame), empty)


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
    """The whole page as a string."""
    run = data.run
    plots, has_figures = _plots(data)
    script = f'<script type="text/javascript">{get_plotlyjs()}</script>' if has_figures else ""
    notes = "".join(f'<p class="muted">{_text(n)}</p>' for n in data.notes)
    sections = [
        ("What ran", _summary(data)),
        ("Gate decision", _gate_section(data)),
        ("Data quality", _findings_section(data)),
        (
            "Quarantine",
            _table(
                data.quarantine,
                [
                    ("reason", "reason"),
                    ("rows", "rows"),
                    ("series", "series"),
                    ("batches", "batches"),
                ],
                "No rows quarantined in this pipeline's batches.",
            ),
        ),
        (
            "Model mix",
            _table(
                data.model_mix,
                [
                    ("model", "model"),
                    ("source", "source"),
                    ("series", "series"),
                    ("share", "share"),
                ],
                "No provenance recorded for this run.",
            ),
        ),
        (
            "Backtest accuracy (mean over series and windows)",
            _table(
                data.backtest,
                _all_columns(data.backtest),
                "No backtest scores recorded for this run.",
            ),
        ),
        (
            "Realised accuracy",
            _optional(
                data.realised,
                "Realised accuracy is not recorded in this workspace yet.",
                "No actuals have arrived for this run's forecasts yet.",
            ),
        ),
        (
            "Resource use by stage",
            _table(
                data.stages,
                [
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
                ],
                "No stages recorded.",
            ),
        ),
        (
            "Resource use by model",
            _table(
                data.models.sort_values("cpu_s", ascending=False)
                if not data.models.empty
                else data.models,
                [
                    ("model", "model"),
                    ("tasks", "tasks"),
                    ("failures", "failures"),
                    ("cpu_s", "CPU s"),
                    ("peak_rss_mb", "peak MB"),
                ],
                "No model usage recorded.",
            ),
        ),
        (
            "Incidents raised by this run",
            _optional(data.incidents, "Incidents are not recorded in this workspace.", "None."),
        ),
        ("Forecasts", notes + plots),
    ]
    body = "".join(f"<section><h2>{_text(t)}</h2>{html}</section>" for t, html in sections)
    title = f"steadycast run {run.get('run_id', '')} ({run.get('pipeline', '')})"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_text(title)}</title><style>{STYLE}</style>{script}</head>"
        f"<body><h1>{_text(title)}</h1>{body}"
        f'<p class="muted">Made by steadycast {_text(__version__)}.</p></body></html>\n'
    )
