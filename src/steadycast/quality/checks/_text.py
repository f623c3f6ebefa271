"""How times, counts and numbers read in a result's sentence."""

from __future__ import annotations

import math

import pandas as pd


def _fmt_ts(ts: pd.Timestamp | None) -> str:
    if ts is None:
        return "?"
    return str(ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.strftime("%Y-%m-%d %H:%M"))


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def _fmt_num(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def _fmt_ratio(ratio: float) -> str:
    if ratio >= 1:
        return f"{_fmt_num(ratio)}x above"
    return f"{_fmt_num(1.0 / ratio)}x below"
