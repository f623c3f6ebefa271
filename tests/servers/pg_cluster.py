"""A throwaway PostgreSQL server: Debian's binaries, a temporary cluster, 127.0.0.1.

The server is started once per test session with initdb and pg_ctl in a temporary directory on a
free port (unix sockets in that directory too, so it never meets a system cluster), with
password authentication over TCP so that the tests exercise PGPASSWORD as a user would. It is
stopped with ``pg_ctl stop -m fast`` at teardown, whatever the tests did. PostgreSQL refuses to
run as root, so under root the binaries run as the ``postgres`` user the Debian package creates.
Without the binaries ``running_server`` raises ``Unavailable`` saying how to install them (the
``postgres_server`` fixture in postgres.py turns that into a skip). The benchmarks use it too,
so it needs nothing but the standard library and psycopg.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

USER = "steadycast"
DATABASE = "forecasts"
INSTALL_HINT = "run `make postgresql` or `apt-get install -y postgresql`"


class Unavailable(RuntimeError):
    """The server cannot run here (no binaries, no user to run them as); says how to fix it."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server: ``dsn`` carries no password; ``env`` holds what a client process needs
    (PGPASSWORD), to pass to subprocesses as ``env={**os.environ, **server.env}``."""

    dsn: str
    password: str
    env: dict[str, str] = field(default_factory=dict)

    def connect(self, **kwargs: Any) -> Any:
        """A psycopg connection as the test's user (autocommit unless told otherwise)."""
        import psycopg

        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.dsn, password=self.password, **kwargs)

    def with_database(self, name: str) -> str:
        """The DSN of another database on this server (created by the caller)."""
        return self.dsn.rsplit("/", 1)[0] + "/" + name


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding initdb, else initdb's folder on PATH."""

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: version(p.parent)
    )
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


def _as_server_user() -> list[str]:
    """The prefix that runs a binary as a user PostgreSQL accepts (not root)."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise Unavailable("PostgreSQL cannot run as root and runuser is missing")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable(
            f"PostgreSQL cannot run as root and there is no 'postgres' user: {INSTALL_HINT}"
        ) from None
    return [runuser, "-u", "postgres", "--"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120, **kwargs)


@contextlib.contextmanager
def running_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """Start a throwaway cluster, yield it, always stop and remove it. ``durable`` keeps
    PostgreSQL's default fsync settings (for benchmarks); tests run without them."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise Unavailable(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")
    prefix = _as_server_user()
    # Not under pytest's tmp_path: its parents are private to root, and the server user must
    # reach its data directory.
    home = Path(tempfile.mkdtemp(prefix="steadycast-pg-"))
    data = home / "data"
    password = secrets.token_urlsafe(16)
    pwfile = home / "pw"
    pwfile.write_text(password + "\n")
    if prefix:
        shutil.chown(home, "postgres")
        shutil.chown(pwfile, "postgres")
    started = False
    try:
        _run(
            [
                *prefix,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        for attempt in range(3):
            port = _free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {port} -k {home}"
            if not durable:  # durability is not under test: keeps the suite fast on a shared disk
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            try:
                _run(
                    [
                        *prefix,
                        str(bin_dir / "pg_ctl"),
                        "start",
                        "-w",
                        "-t",
                        "60",
                        "-D",
                        str(data),
                        "-l",
                        str(home / "server.log"),
                        "-o",
                        options,
                    ]
                )
                started = True
                break
            except subprocess.CalledProcessError:
                if attempt == 2:  # the port was taken between choosing and binding, thrice
                    log = (home / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"PostgreSQL did not start:\n{log}") from None
        dsn = f"postgresql://{USER}@127.0.0.1:{port}/{DATABASE}"
        server = PostgresServer(dsn=dsn, password=password, env={"PGPASSWORD": password})
        import psycopg

        admin = f"postgresql://{USER}@127.0.0.1:{port}/postgres"
        with psycopg.connect(admin, password=password, autocommit=True) as con:
            con.execute(f"CREATE DATABASE {DATABASE}")
        yield server
    finally:
        if started:
            subprocess.run(
                [*prefix, str(bin_dir / "pg_ctl"), "stop", "-m", "fast", "-w", "-D", str(data)],
                capture_output=True,
                timeout=120,
            )
        shutil.rmtree(home, ignore_errors=True)
