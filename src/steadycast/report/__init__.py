"""The per-run HTML report: one self-contained file, with plots, fit to e-mail.

    write_report(ws, run_id, output)   gather the run's facts, render them, write the file
    render_report(ws, run_id)          the same page as a string (for the server)

``data.py`` gathers (control plane, store, releases), ``figures.py`` draws, ``html.py`` renders
and escapes. An unknown run raises ``NotFoundError`` naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

from steadycast.report.data import ReportData, collect
from steadycast.report.html import render
from steadycast.workspace import Workspace

__all__ = ["ReportData", "collect", "render_report", "write_report"]


def render_report(ws: Workspace, run_id: str) -> str:
    """The report of ``run_id`` as one HTML page."""
    return render(collect(ws, run_id))


def write_report(ws: Workspace, run_id: str, output: Path) -> Path:
    """Write the report of ``run_id`` to ``output`` and return its path.

    Written to a temporary file beside ``output`` and renamed, so a reader (a mailer picking up
    the file from cron) never sees half a report.
    """
    page = render_report(ws, run_id)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return output
