"""Plots of the report: recent history and the forecast with its intervals, a panel per series.

One figure holds a grid of series (rather than a figure per series) so the e-mailed file carries
one JSON blob per group and stays small; plotly's JS is not included here (the page inlines it
once, see ``html.py``).
"""

from __future__ import annotations

import math
from html import escape

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLUMNS = 2
PANEL_HEIGHT = 240
_BAND = {80: "rgba(31, 119, 180, 0.30)", 95: "rgba(31, 119, 180, 0.15)"}
_OTHER_BAND = "rgba(31, 119, 180, 0.20)"


def forecast_grid(
    history: pd.DataFrame,
    forecasts: pd.DataFrame,
    ids: list[str],
    levels: list[int],
    titles: dict[str, str] | None = None,
) -> go.Figure:
    """A grid of panels, one per series: actuals, forecast, and a band per interval level.

    Bands are drawn widest first so the narrower one sits on top. Plotly reads titles as a
    subset of HTML (``<b>``, ``<br>``) and decodes &lt; &gt; &amp; (not &quot;), so ids are
    escaped, quotes aside, to show as typed.
    """
    rows = max(1, math.ceil(len(ids) / COLUMNS))
    names = [escape((titles or {}).get(u, u), quote=False) for u in ids]
    fig = make_subplots(
        rows=rows,
        cols=COLUMNS,
        subplot_titles=names,
        vertical_spacing=min(0.12, 0.5 / rows),
        horizontal_spacing=0.08,
    )
    for i, uid in enumerate(ids):
        hist = history[history["unique_id"] == uid]
        fc = forecasts[forecasts["unique_id"] == uid].sort_values("ds")
        cell = {"row": i // COLUMNS + 1, "col": i % COLUMNS + 1}
        for trace in [*_bands(fc, levels), *_lines(hist, fc)]:
            trace.showlegend = i == 0  # one legend entry per kind of line
            fig.add_trace(trace, **cell)
    fig.update_layout(
        height=PANEL_HEIGHT * rows + 90,
        margin={"l": 40, "r": 20, "t": 70, "b": 30},
        # Anchored to the top of the whole figure, above the first row's titles.
        legend={"orientation": "h", "x": 0, "y": 1, "yref": "container", "yanchor": "top"},
        template="plotly_white",
    )
    fig.update_annotations(font_size=12)
    return fig


def _bands(fc: pd.DataFrame, levels: list[int]) -> list[go.Scatter]:
    """A filled band per interval level the forecast carries, widest first."""
    bands = []
    for level in sorted(levels, reverse=True):
        lo, hi = f"yhat_lo_{level}", f"yhat_hi_{level}"
        if lo not in fc.columns or hi not in fc.columns or fc.empty:
            continue
        bands.append(
            go.Scatter(
                x=pd.concat([fc["ds"], fc["ds"][::-1]]),
                y=pd.concat([fc[hi], fc[lo][::-1]]),
                fill="toself",
                fillcolor=_BAND.get(level, _OTHER_BAND),
                line={"width": 0},
                hoverinfo="skip",
                name=f"{level}% interval",
                legendgroup=f"band{level}",
            )
        )
    return bands


def _lines(hist: pd.DataFrame, fc: pd.DataFrame) -> list[go.Scatter]:
    """The history line, and the forecast line when there is one."""
    lines = [
        go.Scatter(
            x=hist["ds"],
            y=hist["y"],
            mode="lines",
            line={"color": "#444", "width": 1},
            name="history",
            legendgroup="history",
        )
    ]
    if not fc.empty:
        lines.append(
            go.Scatter(
                x=fc["ds"],
                y=fc["yhat"],
                mode="lines",
                line={"color": "#1f77b4", "width": 2},
                name="forecast",
                legendgroup="forecast",
            )
        )
    return lines


def figure_div(fig: go.Figure, div_id: str) -> str:
    """The figure as a ``<div>`` and its script, without plotly's JS (the page carries it)."""
    html: str = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )
    return html
