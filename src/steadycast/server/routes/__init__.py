"""The routes of the HTTP API, one router per resource.

    health.py     GET /healthz (never guarded)
    metrics.py    GET /metrics (Prometheus) and GET /api/v1/hogs
    pipelines.py  GET /api/v1/pipelines and a pipeline's releases
    forecasts.py  a pipeline's forecasts, its series and one series in detail, from memory;
                  and ForecastFastPath, the same forecast answer before FastAPI's routing
    runs.py       GET /api/v1/runs/{run_id} and a pipeline's data quality
    reports.py    GET /api/v1/runs/{run_id}/report: the run's HTML report (alerts link to it)
    levers.py     POST rollback and approve (token, audited)
    triggers.py   POST a pipeline's ingest and run (token, audited), GET a started run's progress
    incidents.py  the incident list, acknowledge and resolve (token, audited)
    audit.py      GET /api/v1/audit (token, even when reads are open)
    dashboard.py  the static page, its files and plotly's bundle (not in the OpenAPI document)

``GUARDED`` are the routers whose reads need the token when ``[server] read_token_required =
true``; ``create_app`` includes them in this order, which is the order of the OpenAPI document.
"""

from fastapi import APIRouter

from steadycast.server.routes import (
    audit,
    dashboard,
    forecasts,
    health,
    incidents,
    levers,
    metrics,
    pipelines,
    reports,
    runs,
    triggers,
)

__all__ = [
    "GUARDED",
    "audit",
    "dashboard",
    "forecasts",
    "health",
    "incidents",
    "levers",
    "metrics",
    "pipelines",
    "reports",
    "runs",
    "triggers",
]

# The forecast reads first: every router tried before the one that matches costs each request.
GUARDED: tuple[APIRouter, ...] = (
    forecasts.router,
    metrics.router,
    pipelines.router,
    levers.router,
    triggers.router,
    runs.router,
    reports.router,
    incidents.router,
    audit.router,
)
