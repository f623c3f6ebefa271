"""PostgreSQL connections for the query source and the table sink: one place that reads a
``postgresql://user@host:port/db`` URL, refuses a password in it, names it in messages and turns
libpq's errors into one sentence.

The password never passes through steadycast: libpq reads it from ``PGPASSWORD`` or
``~/.pgpass`` when it connects, so it cannot leak into a pipeline file, a message, the ledger, an
audit entry or a run record. Every session runs in UTC with ISO dates, so timestamps cross the
wire with an explicit offset whatever the server's default zone is.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from steadycast.errors import ConfigError

if TYPE_CHECKING:
    import psycopg

_SCHEMES = ("postgresql", "postgres")
_EXAMPLE = "postgresql://user@host:5432/dbname"


def label(url: str) -> str:
    """The URL as messages show it: ``postgresql://user@host:port/db``, never a password nor
    connection options."""
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError:
        return re.sub(r"(://[^:@/]*):[^@/]*@", r"\1@", url).split("?")[0]  # no password
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{parts.hostname or 'localhost'}:{port}{parts.path}"


def url_problem(url: str) -> str | None:
    """What is wrong with a database URL, or None: not PostgreSQL's, a password in it (never
    repeated in the sentence), no database named. Used where the pipeline file is validated."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        return f"{label(url)!r} is not a URL ({exc}); write it like {_EXAMPLE}"
    if parts.scheme not in _SCHEMES:
        return f"{label(url)!r} is not a PostgreSQL URL; write it like {_EXAMPLE}"
    if parts.password is not None or "password" in parse_qs(parts.query):
        return (
            f"{label(url)!r}: the URL holds a password; remove it and give it through "
            "PGPASSWORD or ~/.pgpass, so that it is never stored with the pipeline"
        )
    if not parts.path.strip("/"):
        return f"{label(url)!r}: name the database, as in {_EXAMPLE}"
    return None


def check_url(url: str, where: str) -> None:
    """``url_problem`` as a ``ConfigError`` (``where`` names the setting, for example
    ``[source] database``)."""
    problem = url_problem(url)
    if problem is not None:
        raise ConfigError(f"{where} = {problem}")


def connect(
    url: str, where: str, *, autocommit: bool = False
) -> psycopg.Connection[tuple[object, ...]]:
    """A connection in UTC with ISO dates; a failure is a ``PgError`` holding one sentence, which
    the caller wraps in its own error (``InputFileError`` for a source, ``SinkError`` for a sink)."""
    import psycopg

    check_url(url, where)
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            connect_timeout=15,
            options="-c TimeZone=UTC -c DateStyle=ISO,YMD",
            application_name="steadycast",
        )
    except psycopg.Error as exc:
        raise PgError(f"cannot connect ({problem(exc)})") from None


class PgError(Exception):
    """A libpq or server error as one sentence, for the source or the sink to name."""


def problem(exc: BaseException) -> str:
    """The server's or libpq's message on one line: the server's primary message when there is
    one, otherwise libpq's without its ``connection to server at ... failed:`` preamble (the
    caller names the database)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return str(primary)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = re.sub(r"^(connection failed: )?connection to server at .*?failed: ", "", text)
    text = " ".join(re.sub(r"^(FATAL|ERROR):\s+", "", text).split())
    return text or type(exc).__name__
