"""The redaction of credentials in request targets and log records (``server/redact.py``)."""

from __future__ import annotations

import io
import logging

import pytest

from steadycast.server.redact import RedactingFilter, redact_target, secret_params

TOKEN = "s3cr3t-TOKEN-value"


@pytest.mark.parametrize(
    ("query", "names"),
    [
        (f"token={TOKEN}", ["token"]),
        (f"ACCESS_TOKEN={TOKEN}&series=m0", ["ACCESS_TOKEN"]),
        (f"acc%65ss_token={TOKEN}", ["access_token"]),  # a percent-encoded name
        (f"series=m0&api_key={TOKEN}&apikey=x", ["api_key", "apikey"]),
        (
            "password=x&client_secret=y&Authorization=z",
            ["password", "client_secret", "Authorization"],
        ),
        ("series=m0&format=csv&prefix=tok&limit=5&since=7d&by=cpu&state=open", []),
    ],
)
def test_credential_parameters_are_found_by_name(query: str, names: list[str]) -> None:
    assert secret_params(query) == names


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (f"/api/v1/pipelines?token={TOKEN}", "/api/v1/pipelines?token=[redacted]"),
        (f"/x?series=m0&Access_Token={TOKEN}", "/x?series=m0&Access_Token=[redacted]"),
        (f"/api/v1/runs/{TOKEN}", "/api/v1/runs/[redacted]"),
        (f"/api/v1/runs/{TOKEN.replace('-', '%2D')}", "/api/v1/runs/[redacted]"),
        (f"/f?series={TOKEN}&format=csv", "/f?series=[redacted]&format=csv"),
        ("/api/v1/pipelines?series=m0&flag", "/api/v1/pipelines?series=m0&flag"),
        ("/healthz", "/healthz"),
    ],
)
def test_targets_lose_credentials_and_the_token(target: str, expected: str) -> None:
    assert redact_target(target, TOKEN) == expected


def test_an_access_record_keeps_its_shape_and_loses_the_token() -> None:
    logger = logging.getLogger("steadycast.test.redact")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.addFilter(RedactingFilter(TOKEN))
    logger.propagate = False
    try:
        args = ("127.0.0.1:5000", "GET", f"/api/v1/pipelines?access_token={TOKEN}", "1.1", 400)
        logger.warning('%s - "%s %s HTTP/%s" %d', *args)
        logger.warning("the token %s in a message", TOKEN)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert TOKEN not in text
    assert '"GET /api/v1/pipelines?access_token=[redacted] HTTP/1.1" 400' in text
    assert "the token [redacted] in a message" in text
