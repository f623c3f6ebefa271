"""Hostile requests against every route of the HTTP API, enumerated from ``app.routes``.

Injected: writes with no token, a wrong token or a malformed Authorization header; path
traversal (plain, percent-encoded, double-encoded, backslashes), SQL, NUL bytes, CR/LF,
unicode and 1 MB strings in every path, query and body parameter of every route; huge query
strings and bodies. Requests are raw bytes on a socket (an HTTP client would normalise or
refuse half of them) to a real uvicorn on 127.0.0.1.

The promise, per response: never a 5xx; a write without a valid token is 401 or 403 and
changes nothing; a hostile value where an id belongs is rejected (4xx) or looked up as a plain
id (404); no file from outside the workspace (``/etc/passwd``, a marker file beside the
workspace) is ever in a body.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import socket
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel
from starlette.routing import Mount

from steadycast.ops.incidents import raise_incident
from steadycast.server import create_app
from steadycast.storage import control, releases
from tests.reliability.conftest import Record, size
from tests.server_workspace import PIPELINE, TOKEN, Served, running, served_workspace

OUTSIDE_MARKER = "OUTSIDE-THE-WORKSPACE-7f3a91"
PASSWD_MARKER = "root:x:0:0"
MB = 1024 * 1024

TRAVERSAL = [
    "../../../../../../etc/passwd",
    "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%252F..%252F..%252Fetc%252Fpasswd",
    "....//....//....//etc/passwd",
    "..\\..\\..\\..\\etc\\passwd",
    "/etc/passwd",
    "file:///etc/passwd",
    "../outside.txt",
    "../../outside.txt",
    "../../../outside.txt",
    "meters/../../outside.txt",
]
INJECTION = [
    "' OR 1=1 --",
    "meters' OR '1'='1",
    '" OR ""="',
    "1; DROP TABLE runs; --",
    "1 UNION SELECT * FROM audit --",
    "%' AND 1=1 AND '%'='",
    "$(cat /etc/passwd)",
    "`id`",
    "{{7*7}}",
    "<script>alert(1)</script>",
]
ODD = [
    "\x00",
    "meters\x00.toml",
    "m0\x00",
    "a\r\nX-Injected: 1",
    "\u202eevil",
    "ünïcødé-ÿ",
    "𝕊𝕖𝕣𝕚𝕖𝕤🙂",
    "\ud800",  # a lone surrogate: not encodable as UTF-8, sent as raw bytes instead
    "",
    " ",
    ".",
    "..",
    "%",
    "%zz",
    "-1",
    "0",
    "99999999999999999999999999",
    "1e309",
    "NaN",
]
HUGE = ["x" * MB, "../" * (MB // 3), "%2e%2e%2f" * (MB // 9)]


def payloads(extra: int, seed: int = 0) -> list[str]:
    """The fixed hostile values plus ``extra`` random ones (long mode)."""
    rng = random.Random(seed)
    alphabet = [chr(c) for c in range(0, 0x250)] + ["/", "..", "%", "'", '"', "\\", "\x00"]
    randoms = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 64))) for _ in range(extra)
    ]
    return [*TRAVERSAL, *INJECTION, *ODD, *HUGE, *randoms]


@functools.cache  # the 1 MB values are encoded once, not once per parameter
def encode(value: str) -> str:
    """Percent-encode every byte of ``value`` (lone surrogates as their raw code units)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def send(port: int, method: str, target: bytes, headers: dict[str, str], body: bytes) -> Answer:
    """One request as raw bytes on a fresh connection; the connection is closed after it."""
    head = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    head += [f"{k}: {v}".encode("utf-8", "surrogatepass") for k, v in headers.items()]
    head += [f"Content-Length: {len(body)}".encode(), b"Connection: close"]
    data = b"\r\n".join(head) + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        # The server may answer (400, 413) and close before it has read everything.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return Answer(0, {}, b"")  # closed without an answer: counted by the caller
    top, _, rest = raw.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    parsed = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return Answer(status, parsed, rest)


@dataclass(frozen=True)
class Slot:
    """One place a hostile value can go: a path, query or body parameter of a route."""

    method: str
    template: str
    where: str  # "path" | "query" | "body" | "static"
    name: str
    is_id: bool  # an id is looked up: a hostile value must be 4xx, never 2xx
    write: bool


ID_PARAMS = {"pipeline", "series_id", "run_id", "incident_id", "series", "to"}


def body_model(route: RouteContext) -> type[BaseModel] | None:
    for param in route.dependant.body_params:
        annotation = param.field_info.annotation
        for candidate in (annotation, *typing.get_args(annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                return candidate
    return None


def routes(app: FastAPI) -> list[RouteContext]:
    """Every route of the app, those of its included routers too, as FastAPI serves them (with
    the dependencies the router was included with)."""
    return list(iter_route_contexts(app.routes))


def slots(app: FastAPI) -> list[Slot]:
    """Every parameter of every route of the app, from ``app.routes``."""
    found: list[Slot] = []
    for route in routes(app):
        if isinstance(route.original_route, Mount):
            found.append(Slot("GET", route.path + "/{path}", "static", "path", False, False))
            continue
        if not isinstance(route.original_route, APIRoute):
            continue
        for method in sorted(route.methods):
            write = method != "GET"
            dep = route.dependant
            for p in dep.path_params:
                found.append(Slot(method, route.path, "path", p.name, p.name in ID_PARAMS, write))
            for p in dep.query_params:
                found.append(Slot(method, route.path, "query", p.name, p.name in ID_PARAMS, write))
            model = body_model(route)
            for name in model.model_fields if model else []:
                found.append(Slot(method, route.path, "body", name, name in ID_PARAMS, write))
            # An undeclared parameter too: it must be ignored or refused, never acted on.
            found.append(Slot(method, route.path, "query", "series_id", False, write))
    return found


def fill(template: str, values: dict[str, str]) -> str:
    path = template
    for name, value in values.items():
        path = path.replace("{" + name + ":path}", value).replace("{" + name + "}", value)
    return path


HOLE = "HOLE-7c1f"  # where the hostile value goes in a path, replaced after encoding


@dataclass
class Target:
    """The served workspace, its port and valid values for every parameter."""

    served: Served
    port: int
    path: dict[str, str]
    query: dict[str, str]
    body: dict[str, dict[str, str]]
    query_of: dict[str, tuple[str, ...]]  # declared query parameters per route template

    def request(self, slot: Slot, value: str, *, raw: bool = False) -> tuple[bytes, bytes]:
        """(request target, body) with ``value`` in ``slot`` and valid values elsewhere.

        ``raw`` puts the value into the path as it is, not percent-encoded.
        """
        path_values = dict(self.path)
        declared = self.query_of.get(slot.template, ())
        query = {k: self.query[k] for k in declared if k in self.query}
        body = dict(self.body.get(slot.template, {}))
        if slot.where in ("path", "static"):
            path_values[slot.name] = HOLE
        elif slot.where == "query":
            query[slot.name] = value
        else:
            body[slot.name] = value
        request_target = quote(fill(slot.template, path_values), safe="/:").encode()
        if slot.where in ("path", "static"):
            hole = value.encode("utf-8", "surrogatepass") if raw else encode(value).encode()
            request_target = request_target.replace(HOLE.encode(), hole)
        if query:
            pairs = "&".join(f"{encode(k)}={encode(v)}" for k, v in query.items())
            request_target += b"?" + pairs.encode()
        payload = b""
        if slot.method == "POST":
            payload = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
        return request_target, payload

    def send(self, slot: Slot, value: str, headers: dict[str, str], *, raw: bool = False) -> Answer:
        request_target, body = self.request(slot, value, raw=raw)
        headers = {**headers, "Content-Type": "application/json"}
        return send(self.port, slot.method, request_target, headers, body)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("security")
    served = served_workspace(root / "copy")
    # A file beside the workspace that traversal would reach.
    for parent in [root, served.ws.root, served.ws.root.parent]:
        (parent / "outside.txt").write_text(OUTSIDE_MARKER)
    incident, _ = raise_incident(
        served.ws.control_path,
        f"check:flat_line:{PIPELINE}:m0",
        PIPELINE,
        "check",
        "warning",
        "flat_line failed for series 'm0'",
        "flat for 30 h",
        None,
    )
    app = create_app(served.ws, token=TOKEN)
    query_of = {
        r.path: tuple(p.name for p in r.dependant.query_params)
        for r in app.routes
        if isinstance(r, APIRoute)
    }
    with running(app) as url:
        yield Target(
            served=served,
            port=int(url.rsplit(":", 1)[1]),
            path={
                "pipeline": PIPELINE,
                "series_id": "m0",
                "run_id": served.run_id,
                "incident_id": str(incident.id),
                "path": "app.js",
            },
            query={
                "series": "m0",
                "format": "json",
                "prefix": "m",
                "limit": "5",
                "history": "5",
                "state": "open",
                "pipeline": PIPELINE,
                "since": "7d",
                "by": "cpu",
            },
            body={
                "/api/v1/pipelines/{pipeline}/rollback": {"to": served.second, "reason": "test"},
                "/api/v1/runs/{run_id}/approve": {"reason": "test"},
                "/api/v1/incidents/{incident_id}/acknowledge": {"note": "test"},
                "/api/v1/incidents/{incident_id}/resolve": {"note": "test"},
            },
            query_of=query_of,
        )


def from_app(answer: Answer) -> bool:
    """Whether the app answered (its errors are all ``{"error", "detail"}``), not uvicorn."""
    if 200 <= answer.status < 300:
        return True
    try:
        doc = json.loads(answer.body)
    except ValueError:
        return False
    return isinstance(doc, dict) and "error" in doc


def leaked(answer: Answer) -> str | None:
    text = answer.body.decode("utf-8", "replace")
    for marker in (PASSWD_MARKER, OUTSIDE_MARKER):
        if marker in text:
            return marker
    return None


def state(served: Served) -> tuple[str | None, int]:
    """What a write would change: the current release and the number of audit entries."""
    current = releases.current_id(served.ws.releases_dir, PIPELINE)
    return current, len(control.audit_entries(served.ws.control_path, None, 1000))


BAD_AUTH: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"bearer  {TOKEN} extra"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer ' OR 1=1 --"},
    {"Authorization": "Bearer ünïcødé"},
    {"Authorization": "Bearer " + "x" * 60_000},
    {"X-Api-Token": TOKEN},
]


def test_hostile_requests_on_every_route(target: Target, figure: Record) -> None:
    app_slots = slots(create_app(target.served.ws, token=TOKEN))
    values = payloads(size(0, 300, env="STEADYCAST_API_FUZZ"))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    failures: list[str] = []
    statuses: dict[int, int] = {}
    requests = 0

    def check(slot: Slot, value: str, answer: Answer, *, authorised: bool) -> None:
        nonlocal requests
        requests += 1
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        where = f"{slot.method} {slot.template} {slot.where}:{slot.name}={value[:40]!r}"
        marker = leaked(answer)
        if answer.status == 0:
            failures.append(f"{where}: connection closed without an answer")
        elif answer.status >= 500:
            failures.append(f"{where}: HTTP {answer.status} {answer.body[:200]!r}")
        elif marker:
            failures.append(f"{where}: served a file from outside the workspace ({marker})")
        elif slot.write and not authorised and answer.status not in (401, 403):
            # Only the HTTP layer may answer otherwise (a request line too long for it is a 400
            # that never reaches the app); the app itself must say 401 or 403.
            if from_app(answer) or not 400 <= answer.status < 500:
                failures.append(f"{where}: a write without a valid token got {answer.status}")
        elif slot.is_id and 200 <= answer.status < 300:
            failures.append(f"{where}: a hostile id was accepted ({answer.status})")

    # 1. Writes without a valid token: refused, and nothing changes.
    before = state(target.served)
    for slot in [s for s in app_slots if s.write]:
        for headers in BAD_AUTH:
            for value in ["test", TRAVERSAL[1], INJECTION[0]]:
                check(slot, value, target.send(slot, value, headers), authorised=False)
        check(slot, "x" * MB, target.send(slot, "x" * MB, {}), authorised=False)
    after = state(target.served)
    if after != before:
        failures.append(f"unauthorised writes changed the state: {before} -> {after}")

    # 2. Hostile values in every parameter of every route, with a valid token (so the write
    # routes' own checks are reached too), percent-encoded and, where it fits, raw.
    for slot in app_slots:
        for value in values:
            check(slot, value, target.send(slot, value, auth), authorised=True)
            in_path = slot.where in ("path", "static")
            if in_path and value.isascii() and value.isprintable() and not set(value) & set(" ?#"):
                check(slot, value, target.send(slot, value, auth, raw=True), authorised=True)

    # 3. Oversized and malformed transports: a huge query string, a huge body, broken JSON,
    # a wrong content type, invalid UTF-8, deeply nested JSON.
    big_query = b"/api/v1/pipelines/meters/forecast?" + b"&".join(
        b"series=" + encode(f"m{i}" * 50).encode() for i in range(3000)
    )
    forecast = Slot("GET", "/api/v1/pipelines/{pipeline}/forecast", "query", "series", True, False)
    check(forecast, "huge query", send(target.port, "GET", big_query, auth, b""), authorised=True)
    rollback = "/api/v1/pipelines/{pipeline}/rollback"
    rollback_target = fill(rollback, target.path).encode()
    bodies = [  # (body, whether it holds a hostile id)
        (json.dumps({"to": "x" * (8 * MB), "reason": "r"}).encode(), True),
        (json.dumps({"reason": "r" * (8 * MB), "to": "no-such-release"}).encode(), True),
        (b'{"reason": "r", "to": ', True),
        (b"\xff\xfe\x00not json", True),
        (b"[" * 100_000 + b"]" * 100_000, True),
        (json.dumps({"reason": "r", "to": None, "extra": ["x"] * 100_000}).encode(), False),
    ]
    for i, (body, hostile) in enumerate(bodies):
        slot_body = Slot("POST", rollback, "body", "to", hostile, True)
        for headers, authorised in ((auth, True), ({}, False)):
            for ctype in ("application/json", "text/plain", "multipart/form-data; boundary=x"):
                answer = send(
                    target.port, "POST", rollback_target, {**headers, "Content-Type": ctype}, body
                )
                check(slot_body, f"body #{i} {ctype}", answer, authorised=authorised)

    figure(
        "api-security",
        violations=len(failures),
        value=f"{len(failures)} failures over {requests:,} hostile requests "
        f"({len({(s.method, s.template) for s in app_slots})} routes, {len(app_slots)} parameters, "
        f"{len(values)} payloads)",
        statuses={str(k): v for k, v in sorted(statuses.items())},
        failures=failures[:30],
    )
    assert not failures, failures[:15]


def test_routes_are_all_covered(target: Target) -> None:
    """The enumeration sees every route of the app: a new route is attacked without edits."""
    app = create_app(target.served.ws, token=TOKEN)
    api_routes = {
        (m, r.path)
        for r in routes(app)
        if isinstance(r.original_route, APIRoute)
        for m in r.methods
    }
    covered = {(s.method, s.template) for s in slots(app)}
    assert ("POST", "/api/v1/pipelines/{pipeline}/rollback") in api_routes
    assert ("GET", "/api/v1/pipelines/{pipeline}/forecast") in api_routes
    assert api_routes <= covered
    assert any(s.write for s in slots(app)) and any(s.where == "static" for s in slots(app))
