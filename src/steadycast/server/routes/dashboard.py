"""The dashboard: one static page and its script, plus plotly's bundle served from the
installed package, so the page works offline and under a same-origin CSP. Not in the OpenAPI
document."""

import importlib.util
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC", "install"]

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


def _plotly_bundle() -> Path:
    """plotly's minified bundle, found without importing plotly (a second of start-up)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("plotly is not installed; the dashboard needs its bundle")
    return Path(spec.origin).resolve().parent / "package_data" / "plotly.min.js"


@router.get("/static/plotly.min.js")
async def plotly_bundle() -> FileResponse:
    return FileResponse(_plotly_bundle(), media_type="text/javascript")


@router.get("/")
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


def install(app: FastAPI) -> None:
    """The dashboard's routes and its static files (the plotly route before the mount that
    would shadow it)."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
