"""The ``postgres_server`` fixture: one real PostgreSQL server on 127.0.0.1 per test session
(pg_cluster.py starts and stops it), skipped with the reason when it cannot run here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.pg_cluster import PostgresServer, Unavailable, running_server

__all__ = ["PostgresServer", "postgres_server"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (tests use their own table names); ``dsn`` has no
    password, ``env`` holds PGPASSWORD for the processes a test starts."""
    manager = running_server()
    try:
        server = manager.__enter__()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        manager.__exit__(None, None, None)
