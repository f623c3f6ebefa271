"""Liveness: ``GET /healthz`` answers as long as the process serves requests (never guarded)."""

import functools
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter

from steadycast.server import schemas

__all__ = ["package_version", "router"]

router = APIRouter()


@functools.cache  # the installed metadata is read once: a lookup per probe was most of its time
def package_version() -> str:
    try:
        return version("steadycast")
    except PackageNotFoundError:
        return "unknown"


@router.get("/healthz", response_model=schemas.Health, tags=["ops"])
async def healthz() -> dict[str, str]:
    """Liveness: answers as long as the process serves requests."""
    return {"status": "ok", "version": package_version()}
