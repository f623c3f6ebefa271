"""Prometheus metrics, built on demand from the control plane and the store.

Nothing is counted in process memory: a run is a short-lived CLI process, so counters kept there
would vanish with it. Every scrape reads the records instead (runs, stages and model usage from
SQLite, quarantine from DuckDB), which makes ``/metrics`` of the server and a node-exporter
textfile written by cron say the same thing.

Counters (``*_total``) add up over every recorded run, so ``rate()`` and ``increase()`` work;
``steadycast_last_run_*`` gauges describe the newest finished run of each pipeline. The store
is read with a short wait: while a long ingest holds it, the quarantine figures are left out and
``steadycast_store_readable`` is 0, rather than the scrape hanging.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from steadycast.errors import SteadycastError
from steadycast.storage import store
from steadycast.storage.control import connect
from steadycast.workspace import Workspace

__all__ = ["SteadycastCollector", "render_metrics", "write_textfile"]

STORE_WAIT_S = 2.0
# Run statuses that are a gate's decision; "failed" and "running" never reached the gate.
GATE_DECISIONS = {"published": "published", "held": "held"}


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text).timestamp()


def _has_table(con: sqlite3.Connection, name: str) -> bool:
    row = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return row.fetchone() is not None


class SteadycastCollector(Collector):
    """Reads a workspace's records at each ``collect()``; register it on a registry."""

    def __init__(self, ws: Workspace, *, store_wait_s: float = STORE_WAIT_S) -> None:
        self.ws = ws
        self.store_wait_s = store_wait_s

    def collect(self) -> Iterator[Metric]:
        with connect(self.ws.control_path) as con:
            yield from self._runs(con)
            yield from self._last_runs(con)
            yield from self._stages(con)
            yield from self._models(con)
            if _has_table(con, "incidents"):
                yield from self._incidents(con)
        yield from self._quarantine()

    def _runs(self, con: sqlite3.Connection) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "steadycast_runs",
            "Runs recorded, by pipeline and status.",
            labels=["pipeline", "status"],
        )
        for r in con.execute("SELECT pipeline, status, count(*) FROM runs GROUP BY 1, 2"):
            runs.add_metric([r[0], r[1]], r[2])
        yield runs

        gate = CounterMetricFamily(
            "steadycast_gate_decisions",
            "Gate decisions of runs: published or held (approve and rollback come later).",
            labels=["pipeline", "decision"],
        )
        running = GaugeMetricFamily(
            "steadycast_runs_in_progress", "Runs now in progress.", labels=["pipeline"]
        )
        counts: dict[tuple[str, str], int] = {}
        for r in con.execute("SELECT pipeline, status, count(*) FROM runs GROUP BY 1, 2"):
            if r[1] in GATE_DECISIONS:
                key = (r[0], GATE_DECISIONS[r[1]])
                counts[key] = counts.get(key, 0) + int(r[2])
            if r[1] == "running":
                running.add_metric([r[0]], r[2])
        for (pipeline, decision), n in sorted(counts.items()):
            gate.add_metric([pipeline, decision], n)
        yield gate
        yield running

    def _last_runs(self, con: sqlite3.Connection) -> Iterator[Metric]:
        duration = GaugeMetricFamily(
            "steadycast_last_run_duration_seconds",
            "Wall time of the newest finished run of each pipeline.",
            labels=["pipeline", "status"],
        )
        finished = GaugeMetricFamily(
            "steadycast_last_run_finished_timestamp_seconds",
            "When the newest finished run of each pipeline ended (Unix time).",
            labels=["pipeline", "status"],
        )
        series = GaugeMetricFamily(
            "steadycast_last_run_series", "Series in the newest finished run.", labels=["pipeline"]
        )
        fallback = GaugeMetricFamily(
            "steadycast_series_on_fallback",
            "Series on a fallback (or with no forecast) in the newest finished run.",
            labels=["pipeline"],
        )
        published = GaugeMetricFamily(
            "steadycast_last_published_timestamp_seconds",
            "When each pipeline last published a release (Unix time): alert on staleness.",
            labels=["pipeline"],
        )
        for r in con.execute(
            "SELECT pipeline, status, started_at, finished_at, wall_s, series, fallback_series "
            "FROM runs r WHERE finished_at IS NOT NULL AND finished_at = (SELECT max(finished_at) "
            "FROM runs WHERE pipeline = r.pipeline AND finished_at IS NOT NULL)"
        ):
            start, end = _epoch(r["started_at"]), _epoch(r["finished_at"])
            wall = r["wall_s"] if r["wall_s"] is not None else (end or 0.0) - (start or 0.0)
            duration.add_metric([r["pipeline"], r["status"]], float(wall))
            finished.add_metric([r["pipeline"], r["status"]], end or 0.0)
            if r["series"] is not None:
                series.add_metric([r["pipeline"]], r["series"])
            if r["fallback_series"] is not None:
                fallback.add_metric([r["pipeline"]], r["fallback_series"])
        for r in con.execute(
            "SELECT pipeline, max(finished_at) FROM runs WHERE status = 'published' GROUP BY 1"
        ):
            published.add_metric([r[0]], _epoch(r[1]) or 0.0)
        yield from (duration, finished, series, fallback, published)

    def _stages(self, con: sqlite3.Connection) -> Iterator[Metric]:
        labels = ["pipeline", "stage"]
        totals = {
            "wall_s": CounterMetricFamily(
                "steadycast_stage_wall_seconds", "Wall time spent in each stage.", labels=labels
            ),
            "cpu_s": CounterMetricFamily(
                "steadycast_stage_cpu_seconds",
                "CPU time of each stage, its worker processes included.",
                labels=labels,
            ),
            "rows_in": CounterMetricFamily(
                "steadycast_stage_rows_in", "Rows into each stage.", labels=labels
            ),
            "rows_out": CounterMetricFamily(
                "steadycast_stage_rows_out", "Rows out of each stage.", labels=labels
            ),
            "rows_rejected": CounterMetricFamily(
                "steadycast_stage_rows_rejected", "Rows each stage rejected.", labels=labels
            ),
        }
        for r in con.execute(
            "SELECT r.pipeline, s.name, sum(s.wall_s), sum(s.cpu_s), sum(s.rows_in), "
            "sum(s.rows_out), sum(s.rows_rejected) FROM stages s JOIN runs r USING (run_id) "
            "WHERE s.status != 'running' GROUP BY 1, 2 ORDER BY 1, 2"
        ):
            for i, family in enumerate(totals.values()):
                family.add_metric([r[0], r[1]], float(r[2 + i] or 0))
        yield from totals.values()

        last = {
            "wall_s": GaugeMetricFamily(
                "steadycast_last_run_stage_wall_seconds",
                "Wall time of each stage in the newest run of each pipeline.",
                labels=labels,
            ),
            "cpu_s": GaugeMetricFamily(
                "steadycast_last_run_stage_cpu_seconds",
                "CPU time of each stage in the newest run of each pipeline.",
                labels=labels,
            ),
            "peak_rss_mb": GaugeMetricFamily(
                "steadycast_last_run_stage_peak_rss_bytes",
                "Peak resident memory of each stage in the newest run of each pipeline.",
                labels=labels,
            ),
        }
        for r in con.execute(
            "SELECT r.pipeline, s.name, s.wall_s, s.cpu_s, s.peak_rss_mb FROM stages s "
            "JOIN runs r USING (run_id) WHERE r.started_at = (SELECT max(started_at) FROM runs "
            "WHERE pipeline = r.pipeline) AND s.status != 'running' ORDER BY 1, s.seq"
        ):
            last["wall_s"].add_metric([r[0], r[1]], float(r[2] or 0))
            last["cpu_s"].add_metric([r[0], r[1]], float(r[3] or 0))
            last["peak_rss_mb"].add_metric([r[0], r[1]], float(r[4] or 0) * 1024 * 1024)
        yield from last.values()

    def _models(self, con: sqlite3.Connection) -> Iterator[Metric]:
        labels = ["pipeline", "model"]
        cpu = CounterMetricFamily(
            "steadycast_model_cpu_seconds", "CPU time of each model's worker tasks.", labels=labels
        )
        tasks = CounterMetricFamily(
            "steadycast_model_tasks", "Worker tasks run per model.", labels=labels
        )
        failures = CounterMetricFamily(
            "steadycast_model_failures", "Worker tasks of each model that failed.", labels=labels
        )
        for r in con.execute(
            "SELECT r.pipeline, m.model, sum(m.cpu_s), sum(m.tasks), sum(m.failures) "
            "FROM model_usage m JOIN runs r USING (run_id) GROUP BY 1, 2 ORDER BY 1, 2"
        ):
            cpu.add_metric([r[0], r[1]], float(r[2] or 0))
            tasks.add_metric([r[0], r[1]], float(r[3] or 0))
            failures.add_metric([r[0], r[1]], float(r[4] or 0))
        yield from (cpu, tasks, failures)

    def _incidents(self, con: sqlite3.Connection) -> Iterator[Metric]:
        labels = ["pipeline", "severity"]
        families = {
            "open": GaugeMetricFamily(
                "steadycast_open_incidents", "Incidents open (not acknowledged).", labels=labels
            ),
            "acknowledged": GaugeMetricFamily(
                "steadycast_acknowledged_incidents",
                "Incidents acknowledged but not resolved.",
                labels=labels,
            ),
        }
        for r in con.execute(
            "SELECT state, pipeline, severity, count(*) FROM incidents "
            "WHERE state IN ('open', 'acknowledged') GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ):
            families[r[0]].add_metric([r[1], r[2]], r[3])
        yield from families.values()

    def _quarantine(self) -> Iterator[Metric]:
        readable = GaugeMetricFamily(
            "steadycast_store_readable",
            "1 when the store could be read for this scrape; 0 when another process held it.",
        )
        rows = GaugeMetricFamily(
            "steadycast_quarantined_rows",
            "Rows held in quarantine, by pipeline and reason.",
            labels=["pipeline", "reason"],
        )
        try:
            with store.reading(self.ws.store_path, wait_s=self.store_wait_s) as con:
                found = con.execute(
                    "SELECT pipeline, reason, count(*) FROM quarantine GROUP BY 1, 2 ORDER BY 1, 2"
                ).fetchall()
        except SteadycastError:
            readable.add_metric([], 0)
            yield readable
            return
        for pipeline, reason, n in found:
            rows.add_metric([pipeline, reason], n)
        readable.add_metric([], 1)
        yield readable
        yield rows


def render_metrics(ws: Workspace) -> bytes:
    """The workspace's metrics in the Prometheus text format (for ``GET /metrics``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SteadycastCollector(ws))
    return generate_latest(registry)


def write_textfile(ws: Workspace, path: Path) -> Path:
    """Write the metrics for node-exporter's textfile collector, atomically.

    Written to a temporary file in the same directory and renamed over ``path``, so the
    exporter never reads half a file (it reads ``*.prom``; the temporary name does not match).
    """
    path = Path(path)
    data = render_metrics(ws)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
