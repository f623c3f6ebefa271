"""An S3-compatible server for the tests: moto's standalone server on 127.0.0.1.

Started once per test session as its own process (``python -m moto.server``) on a free port, so
the product talks to it over HTTP exactly as it would to a real store, and stopped at teardown.
The fixture ``s3_server`` is the endpoint URL; ``s3_store`` is the same server with helpers.
Nothing is set globally: a test passes ``server.env`` (the endpoint, a region and credentials) to
the subprocess it starts, or calls the product with those variables in place
(``monkeypatch.setenv``). The secret key is random per session, so a test can search a
workspace for it and know that no copy of it was written anywhere.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

START_TIMEOUT = 30.0  # seconds for the server to answer; it usually takes under one


@dataclass(frozen=True)
class S3Server:
    """A running server: ``endpoint`` is its URL; ``env`` holds what a client process needs."""

    endpoint: str
    access_key: str
    secret_key: str
    env: dict[str, str] = field(default_factory=dict)

    def client(self) -> Any:
        """A boto3 client for arranging a test's objects (the product itself uses pyarrow)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )

    def make_bucket(self, prefix: str = "steadycast") -> str:
        """A new empty bucket with a unique name (tests share the server, not their buckets)."""
        name = f"{prefix}-{secrets.token_hex(4)}".lower()
        self.client().create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, body: bytes | str) -> str:
        """Store one object; returns its ``s3://`` URL."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.client().put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in ``bucket`` under ``prefix``, sorted."""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, bucket: str, key: str) -> bytes:
        """One object's bytes."""
        body: bytes = self.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return body


def free_port() -> int:
    """A port nobody listens on right now, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_until_up(process: subprocess.Popen[bytes], endpoint: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode} before answering")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1),
        ):
            return
        time.sleep(0.1)
    raise RuntimeError(f"moto server did not answer on {endpoint} within {START_TIMEOUT:.0f} s")


@contextlib.contextmanager
def running_s3_server() -> Iterator[S3Server]:
    """Start moto's server on a free 127.0.0.1 port; stop it (and wait for it) afterwards."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed: run `make test`")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_up(process, endpoint)
        access_key = "AKIATEST" + secrets.token_hex(6).upper()
        secret_key = "steadycast-secret-" + secrets.token_hex(12)
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_REGION": "us-east-1",
        }
        yield S3Server(endpoint=endpoint, access_key=access_key, secret_key=secret_key, env=env)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def s3_store() -> Iterator[S3Server]:
    """An S3-compatible server on 127.0.0.1 for the whole session, with helpers and ``env``."""
    with running_s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(s3_store: S3Server) -> str:
    """The endpoint URL of the session's S3-compatible server; any credentials are accepted,
    ``s3_store.env`` has a set ready to pass to a subprocess."""
    return s3_store.endpoint
