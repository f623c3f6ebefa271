"""Values made fit for a JSON response: records with datetimes or numpy scalars, timestamps."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from fastapi.encoders import jsonable_encoder


def plain(value: Any) -> dict[str, Any]:
    """A dict made JSON-safe (datetimes, numpy scalars, NaN-free) for a response model."""
    return cast(dict[str, Any], jsonable_encoder(value))


def iso(value: Any) -> str:
    """A timestamp as the API writes it everywhere: ISO 8601 in UTC, to the second."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)
