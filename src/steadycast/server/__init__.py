"""The HTTP API and dashboard of ``steadycast serve`` (FastAPI, served by uvicorn).

app.py          create_app(ws): the app, its middleware and routers; serve(ws) runs it
deps.py         the server's state (workspace, settings, release caches) and token checks,
                as FastAPI dependencies
middleware.py   security headers, writes need a token, no credentials in URLs, the one
                error body
routes/         one router per resource (pipelines, forecasts, runs, levers, incidents,
                audit, metrics, health, dashboard)
schemas.py      request and response models: the OpenAPI document
cache.py        the in-memory copy of each pipeline's current release
settings.py     the API token and ``[server]`` settings
exposure.py     what a reader without the token may see
redact.py       credentials kept out of URLs and logs
_store_reads.py the two reads of the DuckDB store (a series' history, data quality)
_encode.py      values made fit for a JSON response
"""

from steadycast.server.app import create_app, serve

__all__ = ["create_app", "serve"]
