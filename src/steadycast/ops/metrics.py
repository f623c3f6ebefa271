"""Prometheus metrics, built on demand from the control plane and the store.

Nothing is counted in process memory: a run is a short-lived CLI process, so counters kept there
would vanish with it. Every scrape reads the records instead (the audit log, runs, stages and
model usage from SQLite, quarantine from DuckDB), which makes ``/metrics`` of the server and a
node-exporter textfile written by cron say the same thing.

Counters (``*_total``) never decrease, so ``rate()`` and ``increase()`` work: the counts of
things that happened (runs ending, gate decisions, approvals, rollbacks, incidents, alerts,
batches) are counts of audit-log entries, which are only ever appended; a run's current status
is not used for them, since an approval turns a held run into a published one. The sums over
stages and models add up finished records, which never change. Gauges
(``steadycast_last_run_*``, open incidents, runs in progress) describe the state now. The store
is read with a short wait: while a long ingest holds it, the quarantine figures are left out and
``steadycast_store_readable`` is 0, rather than the scrape hanging.

The server adds its own process (``process_*``, ``python_*``) and request metrics
(``server_registry``); a textfile written by the CLI has only the workspace's.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from steadycast.errors import SteadycastError, UsageError
from steadycast.storage import store
from steadycast.storage.control import connect
from steadycast.workspace import Workspace

__all__ = [
    "SteadycastCollector",
    "event_counters",
    "render_metrics",
    "server_registry",
    "write_textfile",
]

STORE_WAIT_S = 2.0
# Audit actions counted, with the family and the label value each one adds to.
# A run ends published (by its gate), held or failed; a person then approves or rolls back.
_COUNTED = {
    "run.started": (("runs_started", None),),
    "release.published": (("runs", "published"), ("gate", "published")),
    "run.held": (("runs", "held"), ("gate", "held")),
    "run.approved": (("gate", "approved"),),
    "release.rollback": (("gate", "rolled_back"),),
    "incident.opened": (("incidents_opened", None),),
    "incident.resolved": (("incidents_resolved", None),),
    "alert.delivered": (("alerts_sent", None),),
    "alert.failed": (("alert_failures", None),),
}
# How many labels after ``pipeline`` a family takes from the entry's detail.
_DETAIL_LABELS = {
    "incidents_opened": 2,
    "incidents_resolved": 1,
    "alerts_sent": 1,
    "alert_failures": 1,
}
OUTCOMES = ("published", "held", "failed")
DECISIONS = ("published", "held", "approved", "rolled_back")
ALERT_CHANNELS = ("webhook", "command")


def _json(field: str) -> str:
    """SQL for one field of an audit entry's JSON detail (NULL when there is none)."""
    return f"CASE WHEN json_valid(a.detail) THEN json_extract(a.detail, '$.{field}') END"


# One pass over the audit log. A publication by an approval of a run that was held before
# (an approval that continued a run its data checks stopped) is the approval, not a gate
# decision: the ``held`` join leaves it out. It was held first, so leaving it out never
# lowers a count already seen.
_EVENTS_SQL = f"""
WITH held AS (
    SELECT subject AS run_id, min(id) AS id FROM audit WHERE action = 'run.held' GROUP BY 1
)
SELECT a.action, coalesce(a.pipeline, '') AS pipeline,
    CASE WHEN a.action LIKE 'alert.%' THEN {_json("channel")}
         WHEN a.action LIKE 'incident.%' THEN {_json("kind")} END AS k1,
    CASE WHEN a.action LIKE 'incident.%' THEN {_json("severity")} END AS k2,
    count(*) AS n
FROM audit a
LEFT JOIN held h ON a.action = 'release.published' AND h.id < a.id
    AND h.run_id = {_json("run_id")}
WHERE (a.action IN ({", ".join(f"'{k}'" for k in _COUNTED)}) OR a.action LIKE 'ingest.%')
    AND h.run_id IS NULL
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4
"""


def _event_families() -> dict[str, CounterMetricFamily]:
    p = ["pipeline"]
    return {
        "runs_started": CounterMetricFamily(
            "steadycast_runs_started", "Runs started (the audit log's run.started).", labels=p
        ),
        "runs": CounterMetricFamily(
            "steadycast_runs",
            "Runs that ended, by how they ended: published (by the gate), held or failed. "
            "An approval later does not change how a held run ended.",
            labels=[*p, "status"],
        ),
        "gate": CounterMetricFamily(
            "steadycast_gate_decisions",
            "Decisions on what is served: published or held by a run's gate, approved or "
            "rolled_back by a person.",
            labels=[*p, "decision"],
        ),
        "ingest": CounterMetricFamily(
            "steadycast_ingest_batches",
            "Batches ingested, or skipped as already ingested.",
            labels=[*p, "status"],
        ),
        "incidents_opened": CounterMetricFamily(
            "steadycast_incidents_opened",
            "Incidents opened, by kind and severity when opened.",
            labels=[*p, "kind", "severity"],
        ),
        "incidents_resolved": CounterMetricFamily(
            "steadycast_incidents_resolved",
            "Incidents resolved (by a person or because the cause cleared).",
            labels=[*p, "kind"],
        ),
        "alerts_sent": CounterMetricFamily(
            "steadycast_alerts_sent", "Alerts delivered, by channel.", labels=[*p, "channel"]
        ),
        "alert_failures": CounterMetricFamily(
            "steadycast_alert_failures",
            "Alerts that could not be delivered after their retries, by channel.",
            labels=[*p, "channel"],
        ),
    }


def event_counters(con: sqlite3.Connection) -> list[CounterMetricFamily]:
    """The counters of things that happened, from the append-only audit log.

    A failed run is counted from the run records: a run interrupted by a killed process is
    marked failed by the next run of its pipeline without an audit entry, and a failed run
    stays failed. Every known pipeline gets each outcome, decision and alert channel at 0, so
    the first one is seen by ``increase()``.
    """
    counts: dict[tuple[str, tuple[str, ...]], float] = {}
    pipelines: set[str] = set()
    for action, pipeline, k1, k2, n in con.execute(_EVENTS_SQL):
        pipelines.add(pipeline)
        if action.startswith("ingest."):
            targets: tuple[tuple[str, str | None], ...] = (("ingest", action[7:]),)
        else:
            targets = _COUNTED[action]
        for family, value in targets:
            if value is not None:
                extra: tuple[str, ...] = (value,)
            else:  # the labels read from the entry's detail: kind, severity or channel
                extra = tuple(str(k or "") for k in (k1, k2))[: _DETAIL_LABELS.get(family, 0)]
            key = (family, (pipeline, *extra))
            counts[key] = counts.get(key, 0) + n
    for pipeline, n in con.execute(
        "SELECT pipeline, count(*) FROM runs WHERE status = 'failed' GROUP BY 1"
    ):
        counts[("runs", (pipeline, "failed"))] = n
    pipelines |= {r[0] for r in con.execute("SELECT DISTINCT pipeline FROM runs")}
    for pipeline in pipelines - {""}:
        zeros: list[tuple[str, tuple[str, ...]]] = [("runs_started", (pipeline,))]
        zeros += [("runs", (pipeline, o)) for o in OUTCOMES]
        zeros += [("gate", (pipeline, d)) for d in DECISIONS]
        zeros += [
            (f, (pipeline, c)) for f in ("alerts_sent", "alert_failures") for c in ALERT_CHANNELS
        ]
        for key in zeros:
            counts.setdefault(key, 0)
    families = _event_families()
    for (family, labels), n in sorted(counts.items()):
        families[family].add_metric(list(labels), n)
    return list(families.values())


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
        counters = event_counters(con)
        running = GaugeMetricFamily(
            "steadycast_runs_in_progress", "Runs now in progress.", labels=["pipeline"]
        )
        for r in con.execute(
            "SELECT pipeline, count(*) FROM runs WHERE status = 'running' GROUP BY 1 ORDER BY 1"
        ):
            running.add_metric([r[0]], r[1])
        yield from counters
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


def server_registry(ws: Workspace) -> CollectorRegistry:
    """The registry of a long-running server: the workspace's metrics and the standard process
    and Python collectors of this process (``process_*``, ``python_*``). Built once per server,
    collected at each scrape; the server adds its request metrics beside it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SteadycastCollector(ws))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def write_textfile(ws: Workspace, path: Path) -> Path:
    """Write the metrics for node-exporter's textfile collector, atomically.

    Written to a temporary file in the same directory and renamed over ``path``, so the
    exporter never reads half a file (it reads ``*.prom``; the temporary name does not match).
    """
    path = Path(path)
    if not path.parent.is_dir():  # not made here: a misspelt folder is one the exporter never reads
        raise UsageError(
            f"--textfile {path}: the folder {path.parent} does not exist; name a file in the "
            "folder node-exporter reads (its --collector.textfile.directory)"
        )
    if path.is_dir():
        raise UsageError(
            f"--textfile {path}: is a folder; name a file, e.g. {path / 'steadycast.prom'}"
        )
    data = render_metrics(ws)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(
            f"--textfile {path}: cannot write it ({exc.strerror or exc}); name a file in a folder "
            "you can write"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path
