"""The HTTP API and dashboard of ``steadycast serve`` (FastAPI, served by uvicorn)."""

from steadycast.server.app import create_app, serve

__all__ = ["create_app", "serve"]
