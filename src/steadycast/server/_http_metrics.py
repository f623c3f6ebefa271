"""Request counts and latencies per route: ``steadycast_http_requests_total{method,route,status}``
and the histogram ``steadycast_http_request_duration_seconds{method,route}``.

Counted by a plain ASGI layer in a plain dictionary (one update per request, no lock and no
prometheus_client on the request path, so the forecast fast path stays fast and the server
starts without loading it); turned into metric families at each scrape. ``route`` is the
route's template (``/api/v1/pipelines/{pipeline}/forecast``), never the raw path, so the number
of series stays bounded whatever clients ask for: a request no route matches is counted as
``unmatched``, and an unusual method as ``other``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from prometheus_client.core import Metric

__all__ = ["BUCKETS", "UNMATCHED", "HttpMetrics", "RequestStats"]

# Upper bounds in seconds: from the forecast fast path (well under a millisecond) to a slow read.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
_CACHE_SIZE = 1024


class RequestStats:
    """The counts, per method, route and status: a count per latency bucket (the last one is
    +Inf), then the sum of the seconds.

    Only the event loop's thread touches them: the middleware counts there, and a scrape takes
    a ``copy()`` there too before rendering it in a worker thread, so no lock is needed on the
    request path.
    """

    def __init__(self, counts: dict[tuple[str, str, int], list[float]] | None = None) -> None:
        self.counts: dict[tuple[str, str, int], list[float]] = counts or {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        found = self.counts.get(key)
        if found is None:
            found = self.counts[key] = [0.0] * (len(BUCKETS) + 2)
        found[bisect_left(BUCKETS, seconds)] += 1
        found[-1] += seconds

    def copy(self) -> RequestStats:
        return RequestStats({key: list(found) for key, found in self.counts.items()})

    def collect(self) -> Iterator[Metric]:
        """The metric families (a prometheus_client collector: register the object itself)."""
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        counter = CounterMetricFamily(
            "steadycast_http_requests",
            "HTTP requests served, by method, route template and status code.",
            labels=["method", "route", "status"],
        )
        by_route: dict[tuple[str, str], list[float]] = {}
        for (method, route, status), found in sorted(self.counts.items()):
            counter.add_metric([method, route, str(status)], sum(found[:-1]))
            total = by_route.setdefault((method, route), [0.0] * len(found))
            for i, n in enumerate(found):
                total[i] += n
        histogram = HistogramMetricFamily(
            "steadycast_http_request_duration_seconds",
            "Time to answer an HTTP request (until its last byte was handed to the server), "
            "by method and route template.",
            labels=["method", "route"],
        )
        for (method, route), found in by_route.items():
            cumulative, buckets = 0.0, []
            for bound, n in zip([*map(str, BUCKETS), "+Inf"], found[:-1], strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            histogram.add_metric([method, route], buckets, found[-1])
        yield counter
        yield histogram


class RouteTemplates:
    """The template of the route a request went to.

    The router leaves the route it matched in the scope; a request answered before routing
    (the forecast fast path, a refused write) is matched here against the routes' patterns,
    remembering the answer for up to ``_CACHE_SIZE`` paths.
    """

    def __init__(self, routes: Sequence[Any]) -> None:
        self.routes = routes  # the application's live list: routes added later are seen
        self._cache: dict[str, str] = {}

    def of(self, scope: Scope) -> str:
        route = scope.get("route")
        template = getattr(route, "path", None)
        if isinstance(template, str) and template:
            return template
        path: str = scope.get("path", "")
        found = self._cache.get(path)
        if found is None:
            found = self._match(path)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[path] = found
        return found

    def _match(self, path: str) -> str:
        for route in _flat(self.routes):
            if route.path_regex.match(path) and getattr(route, "path", ""):
                return str(route.path)
        return UNMATCHED


def _flat(routes: Sequence[Any]) -> Iterator[Any]:
    """The routes with a path pattern, those of included routers too (FastAPI keeps an
    included router as one entry that holds the router it includes)."""
    for route in routes:
        if getattr(route, "path_regex", None) is not None:
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flat(included.routes)


class HttpMetrics:
    """Count every HTTP request with its route template, status and duration."""

    def __init__(self, app: ASGIApp, stats: RequestStats, routes: Sequence[Any]) -> None:
        self.app = app
        self.stats = stats
        self.templates = RouteTemplates(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        status = 500  # unless a response starts: an error that escapes is answered with 500

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.stats.observe(method, self.templates.of(scope), status, perf_counter() - start)
