"""Keep credentials out of URLs and out of the logs that record URLs.

A token belongs in the ``Authorization`` header, which no log records. A token sent in the
query string (``?token=``, ``?access_token=``, any case) is refused by the server, but the
request line is still written by uvicorn's access log, so every record of the server's loggers
passes through ``RedactingFilter`` first: query parameters whose name says "secret", and any
path segment or parameter holding the configured token itself, are replaced by
``[redacted]``.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, unquote, unquote_plus

__all__ = ["REDACTED", "RedactingFilter", "install_log_redaction", "redact_target", "secret_params"]

REDACTED = "[redacted]"
# Parameter names that carry credentials in the wild: token, access_token, api_key, apikey,
# auth, password, secret, client_secret, signature, jwt ... (compared in lower case).
_SECRET_NAME = re.compile(
    r"token|secret|passw|auth|bearer|api[-_.]?key|^key$|^sig$|signature|jwt|session|credential"
)
# The server's own loggers and uvicorn's: every one that can write a request line or an error.
LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "steadycast.server")


def _is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name.strip().lower()))


def secret_params(query_string: str) -> list[str]:
    """Names of the query parameters that look like credentials, in order of appearance."""
    try:
        pairs = parse_qsl(query_string, keep_blank_values=True, errors="replace")
    except ValueError:  # more fields than parse_qsl allows: judge the raw names instead
        pairs = [(part.partition("=")[0], "") for part in query_string.split("&")]
    return [name for name, _ in pairs if _is_secret_name(unquote_plus(name))]


def _holds(text: str, token: str | None) -> bool:
    return bool(token) and token in unquote_plus(text)  # type: ignore[operator]


def redact_target(target: str, token: str | None = None) -> str:
    """A request target (path and query) fit for a log: no credential, no configured token."""
    path, sep, query = target.partition("?")
    if token and token in unquote(path):
        path = "/".join(REDACTED if token in unquote(seg) else seg for seg in path.split("/"))
        if token in unquote(path):  # split across segments by encoding tricks: drop it all
            path = REDACTED
    if not sep:
        return path
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if _is_secret_name(unquote_plus(name)) or _holds(value, token):
            value = REDACTED
        if _holds(name, token):
            name = REDACTED
        parts.append(f"{name}{eq}{value}" if eq or value else name)
    return f"{path}?{'&'.join(parts)}"


class RedactingFilter(logging.Filter):
    """Rewrites each record so that no credential from a URL (or the token) reaches a handler.

    uvicorn's access records carry the request target as an argument (its formatter unpacks
    them), so string arguments are rewritten in place; other records get their message
    rewritten too. A record is never dropped: the request still appears, minus the secret.
    """

    def __init__(self, token: str | None) -> None:
        super().__init__()
        self.token = token

    def _clean(self, text: str) -> str:
        if "?" in text or "/" in text:
            text = " ".join(
                redact_target(word, self.token) if ("?" in word or "/" in word) else word
                for word in text.split(" ")
            )
        if self.token and self.token in text:
            text = text.replace(self.token, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: self._clean(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        if isinstance(record.msg, str):
            record.msg = self._clean(record.msg)
        return True


def install_log_redaction(token: str | None) -> RedactingFilter:
    """Put one ``RedactingFilter`` on the server's loggers and on every handler they reach.

    Logger filters see the records logged on that logger; handler filters also see the ones
    propagated from elsewhere (a library logging a URL), so both are set. Installing again
    replaces the previous filter.
    """
    new = RedactingFilter(token)
    loggers = [logging.getLogger(name) for name in LOGGERS] + [logging.getLogger()]
    filterers: list[logging.Filterer] = []
    for lg in loggers:
        filterers.append(lg)
        filterers.extend(lg.handlers)
    for target in filterers:
        for old in [f for f in target.filters if isinstance(f, RedactingFilter)]:
            target.removeFilter(old)
        target.addFilter(new)
    return new
