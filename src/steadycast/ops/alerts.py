"""Alerts: tell a person when an incident opens or resolves, without ever failing the run.

Channels (``[alerts]`` in the pipeline config):

- **webhook**: an HTTP POST of a JSON body that Slack's incoming webhooks accept (``text`` and
  ``blocks``) and that carries our own fields for any other receiver (``event``,
  ``incident_id``, ``pipeline``, ``severity``, ``title``, ``detail`` ...);
- **command**: a program run without a shell, the event as JSON on its stdin and in the
  environment variable ``STEADYCAST_EVENT``; exit code 0 means delivered.

Each channel is retried with exponential backoff and jitter (``retries`` more attempts after
the first, waiting ``backoff_s``, then twice that, ..., each plus a random part of up to
``backoff_s`` so that many senders do not retry in step), all within ``deadline_s``. A webhook
is retried on a connection error, a timeout, a 5xx, 408, 425 or 429 (waiting at least what its
``Retry-After`` asks), never on another 4xx or a redirect. httpx sends, tenacity schedules. The outcome of every
delivery goes to the audit log (``alert.delivered`` or ``alert.failed`` with the error and the
attempts), and ``send_alert`` returns normally whatever happens: a broken alert channel is an
alerting problem, never a reason to hold forecasts.

``notify`` (what runs and ``monitor`` call) does not wait for any of it: it queues the alerts on
a background thread (``ops.outbox``) and returns; at process exit the queue gets a few seconds
to empty. A failed delivery opens (or updates) one ``alerts`` incident for the pipeline, "alerts
undeliverable"; the next delivery that succeeds resolves it. ``flush`` waits for the queue.

Each message links to its run's report and the pipeline's dashboard page when ``base_url`` is
set, and names the commands that show the same when it is not.

Webhook URLs often *are* the secret (Slack's carry it in the path), so what is recorded names
only the scheme, host and first path segment: ``https://hooks.slack.com/services/…``; a path of
one segment may be the token itself, so it is not shown (``https://webhook.example/…``). Error
messages are scrubbed of every other piece of the URL too (a malformed port or host makes the
standard library quote it).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sqlite3
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

import httpx
import tenacity

from steadycast.config import AlertsConfig
from steadycast.errors import SteadycastError
from steadycast.ops import advice, incidents
from steadycast.ops.incidents import Finding, Incident, IncidentChanges
from steadycast.ops.outbox import Outbox
from steadycast.quality.severity import rank
from steadycast.storage import control, runlog

__all__ = [
    "AlertDelivery",
    "flush",
    "incident_event",
    "links",
    "notify",
    "redact_url",
    "send_alert",
    "slack_body",
]

log = logging.getLogger("steadycast.alerts")

# httpx logs every request's full URL at INFO, and a webhook URL is often the secret itself.
logging.getLogger("httpx").setLevel(logging.WARNING)

# Worth another try: the receiver or the network may recover. Other 4xx will not.
_RETRY_STATUS = {408, 425, 429}
_ICON = {"incident.opened": ":rotating_light:", "incident.resolved": ":white_check_mark:"}

#: Where ``notify`` queues its alerts: one background thread per process.
OUTBOX = Outbox("steadycast-alerts")


@dataclass(frozen=True)
class AlertDelivery:
    """The outcome of one channel for one event. ``target`` is redacted; ``status`` is the
    last HTTP status or exit code (None when there was none, e.g. a refused connection)."""

    channel: Literal["webhook", "command"]
    target: str
    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None


def redact_url(url: str) -> str:
    """Scheme, host, port and first path segment only: no credentials, query or token path."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    segments = [s for s in parts.path.split("/") if s]
    path = f"/{segments[0]}" if len(segments) > 1 else ""
    if segments or parts.query or parts.fragment:
        path += "/…"
    return f"{parts.scheme}://{host}{port}{path}"


_URL_WORD = re.compile(r"[^/:@?&=#\[\]\s]+")


def _scrub(message: str, url: str, target: str) -> str:
    """``message`` without any piece of ``url`` that its redacted ``target`` does not show."""
    shown = set(_URL_WORD.findall(target))
    secret = {w for w in _URL_WORD.findall(url) if len(w) >= 4 and w not in shown}
    message = message.replace(url, target)
    for word in sorted(secret, key=len, reverse=True):
        message = message.replace(word, "…")
    return message


def incident_event(event: str, incident: Incident, **extra: Any) -> dict[str, Any]:
    """The event for one incident: what every channel receives."""
    return {
        "event": event,
        "incident_id": incident.id,
        "pipeline": incident.pipeline,
        "kind": incident.kind,
        "severity": incident.severity,
        "state": incident.state,
        "title": incident.title,
        "detail": incident.detail,
        "fingerprint": incident.fingerprint,
        "occurrences": incident.occurrences,
        "run_id": incident.run_id,
        "first_seen": incident.first_seen,
        "last_seen": incident.last_seen,
        "resolution": incident.resolution,
        **extra,
    }


def slack_body(event: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack-compatible body (``text`` and ``blocks``) plus the event's own fields."""
    name = str(event.get("event", "incident"))
    verb = name.split(".")[-1]
    ident = f"#{event['incident_id']} " if event.get("incident_id") is not None else ""
    headline = (
        f"{_ICON.get(name, ':bell:')} steadycast incident {ident}{verb} "
        f"({event.get('severity', '?')}) in pipeline {event.get('pipeline', '?')!r}: "
        f"{event.get('title', '')}"
    )
    lines = [f"*{headline}*"]
    if event.get("detail"):
        lines.append(str(event["detail"]))
    if name == "incident.resolved" and event.get("resolution"):
        lines.append(f"_Resolution:_ {event['resolution']}")
    lines += _link_lines(event)
    text = "\n".join(lines)
    return {
        "text": headline,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}],
        **event,
    }


_LINK_NAMES = {"report": "Run report", "dashboard": "Dashboard"}
_COMMAND_NAMES = {"report": "Run report", "status": "Status", "incidents": "Incidents"}


def _link_lines(event: Mapping[str, Any]) -> list[str]:
    """Slack's ``<url|label>`` links, else the commands to paste."""
    urls = event.get("links") or {}
    if urls:
        return [" · ".join(f"<{url}|{_LINK_NAMES.get(k, k)}>" for k, url in urls.items())]
    commands = event.get("commands") or {}
    return [f"{_COMMAND_NAMES.get(k, k)}: `{c}`" for k, c in commands.items()]


def links(
    config: AlertsConfig, control_path: Path | None, pipeline: str, run_id: str | None
) -> dict[str, Any]:
    """What an alert links to: the run's report and the pipeline's dashboard page under
    ``base_url`` (``{"links": ...}``), else the commands that show them (``{"commands": ...}``).
    A run id that names no run (a ``monitor`` tick) gets no report."""
    is_run = bool(run_id) and control_path is not None and _is_run(control_path, str(run_id))
    base = config.base_url
    if base:
        found = {"dashboard": f"{base}/#pipeline={urllib.parse.quote(pipeline)}"}
        if is_run:
            found = {
                "report": f"{base}/api/v1/runs/{urllib.parse.quote(str(run_id))}/report",
                **found,
            }
        return {"links": found}
    if control_path is None:
        return {}
    root = control_path.parent
    commands = {"status": advice.anywhere(root, "status", pipeline)}
    if is_run:
        report = f"report-{run_id}.html"
        commands = {"report": advice.anywhere(root, "report", str(run_id), "-o", report)}
        commands["status"] = advice.anywhere(root, "status", pipeline)
    commands["incidents"] = advice.anywhere(
        root, "incidents", "--state", "open", "--pipeline", pipeline
    )
    return {"commands": commands}


def _is_run(control_path: Path, run_id: str) -> bool:
    try:
        return runlog.get_run(control_path, run_id) is not None
    except (sqlite3.Error, OSError, SteadycastError):
        return False


def _webhook_urls(config: AlertsConfig) -> list[str]:
    urls = list(config.webhook_url)
    if config.webhook_url_env:
        extra = os.environ.get(config.webhook_url_env, "").strip()
        if extra:
            urls.append(extra)
    return urls


class _Try(NamedTuple):
    """One attempt: whether it worked, the HTTP status or exit code, the error, whether another
    attempt may help, and how long the receiver asked us to wait first (``Retry-After``)."""

    ok: bool
    status: int | None
    error: str | None
    retry: bool
    retry_after: float | None = None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent
    or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _post(url: str, body: bytes, timeout_s: float) -> _Try:
    """One POST. Redirects are not followed: a webhook that moved must be configured anew."""
    headers = {"Content-Type": "application/json", "User-Agent": "steadycast-alerts"}
    try:
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=False) as client,
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            status = response.status_code
            reason = response.reason_phrase
            wait = _retry_after(response.headers.get("Retry-After"))
    except httpx.TimeoutException:
        return _Try(False, None, f"timed out after {timeout_s:g} s", True)
    except httpx.UnsupportedProtocol as exc:  # no attempt will fix the URL
        return _Try(False, None, f"invalid URL: {exc}", False)
    except httpx.ConnectError as exc:
        return _Try(False, None, f"cannot connect: {exc}", True)
    except httpx.TransportError as exc:
        return _Try(False, None, f"{type(exc).__name__}: {exc}", True)
    except (httpx.InvalidURL, ValueError) as exc:
        return _Try(False, None, f"invalid URL: {exc}", False)
    if 200 <= status < 300:
        return _Try(True, status, None, True)
    retry = status >= 500 or status in _RETRY_STATUS
    return _Try(False, status, f"HTTP {status} {reason}".strip(), retry, wait if retry else None)


def _run_command(argv: list[str], payload: str, timeout_s: float) -> _Try:
    """One run of the command: (ok, exit code, error, worth retrying)."""
    try:
        done = subprocess.run(
            argv,
            input=payload.encode(),
            env={**os.environ, "STEADYCAST_EVENT": payload},
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        return _Try(False, None, f"no such program: {argv[0]!r}", False)
    except PermissionError:
        return _Try(False, None, f"not executable: {argv[0]!r}", False)
    except subprocess.TimeoutExpired:
        return _Try(False, None, f"timed out after {timeout_s:g} s", True)
    except OSError as exc:
        return _Try(False, None, f"cannot run {argv[0]!r}: {exc}", True)
    if done.returncode == 0:
        return _Try(True, 0, None, True)
    tail = done.stderr.decode(errors="replace").strip()[-300:]
    return _Try(
        False, done.returncode, f"exit code {done.returncode}" + (f": {tail}" if tail else ""), True
    )


def _backoff(config: AlertsConfig) -> Callable[[tenacity.RetryCallState], float]:
    """Exponential backoff with jitter, but never shorter than the receiver's Retry-After."""
    exponential = tenacity.wait_exponential_jitter(
        multiplier=config.backoff_s, jitter=config.backoff_s, max=config.deadline_s
    )

    def wait(state: tenacity.RetryCallState) -> float:
        last = state.outcome.result() if state.outcome is not None else None
        asked = last.retry_after if isinstance(last, _Try) and last.retry_after else 0.0
        return max(float(exponential(state)), asked)

    return wait


def _deliver(
    channel: Literal["webhook", "command"],
    target: str,
    attempt: Callable[[float], _Try],
    config: AlertsConfig,
    secret: str | None,
) -> AlertDelivery:
    """Try one channel up to ``1 + retries`` times with backoff, all of it within
    ``deadline_s``; ``attempt(timeout_s)`` makes one try."""
    errors: list[str] = []
    deadline = time.monotonic() + config.deadline_s

    def once() -> _Try:
        left = deadline - time.monotonic()
        done = attempt(max(min(config.timeout_s, left), 0.1))
        if not done.ok:
            message = done.error or "failed"
            errors.append(_scrub(message, secret, target) if secret else message)
        return done

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda t: not t.ok and t.retry),
        stop=(
            tenacity.stop_after_attempt(config.retries + 1)
            | tenacity.stop_before_delay(config.deadline_s)
        ),
        wait=_backoff(config),
        sleep=OUTBOX.wait,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    last: _Try = retrying(once)
    attempts = int(retrying.statistics.get("attempt_number", 1))
    if last.ok:
        return AlertDelivery(channel, target, True, attempts, last.status, None)
    if last.retry and attempts < config.retries + 1:
        errors.append(f"gave up: the deadline of {config.deadline_s:g} s was reached")
    return AlertDelivery(channel, target, False, attempts, last.status, "; ".join(errors))


def _record(control_path: Path | None, delivery: AlertDelivery, event: Mapping[str, Any]) -> None:
    """Audit the outcome; an unwritable audit log is logged, never raised."""
    if control_path is None:
        return
    try:
        control.audit(
            control_path,
            "alert.delivered" if delivery.ok else "alert.failed",
            pipeline=event.get("pipeline"),
            subject=(
                f"incident:{event['incident_id']}" if event.get("incident_id") is not None else None
            ),
            reason=delivery.error,
            detail={
                "event": event.get("event"),
                "channel": delivery.channel,
                "target": delivery.target,
                "attempts": delivery.attempts,
                "status": delivery.status,
            },
        )
    except (sqlite3.Error, OSError, SteadycastError) as exc:
        log.warning("could not record alert outcome in the audit log: %s", exc)


def send_alert(
    config: AlertsConfig, event: Mapping[str, Any], control_path: Path | None
) -> list[AlertDelivery]:
    """Send one event to every configured channel; returns one delivery per channel.

    Events not in ``config.events`` or below ``config.min_severity`` are not sent (empty
    list). Never raises: every failure is in the returned deliveries and the audit log.
    """
    name = str(event.get("event", ""))
    severity = str(event.get("severity", "error"))
    if name not in config.events or rank(severity, unknown=2) < rank(config.min_severity):
        return []
    deliveries: list[AlertDelivery] = []
    try:
        payload = json.dumps(dict(event), default=str, sort_keys=True)
        body = json.dumps(slack_body(event), default=str).encode()
    except (TypeError, ValueError) as exc:  # an event that cannot be serialised
        log.warning("alert event cannot be serialised: %s", exc)
        return []
    for url in _webhook_urls(config):
        target = redact_url(url)
        delivery = _guarded(
            "webhook",
            target,
            functools.partial(_post, url, body),
            config,
            url,
        )
        _record(control_path, delivery, event)
        deliveries.append(delivery)
    if config.command:
        argv = list(config.command)
        delivery = _guarded(
            "command",
            os.path.basename(argv[0]),
            lambda timeout_s: _run_command(argv, payload, timeout_s),
            config,
            None,
        )
        _record(control_path, delivery, event)
        deliveries.append(delivery)
    return deliveries


def _guarded(
    channel: Literal["webhook", "command"],
    target: str,
    attempt: Callable[[float], _Try],
    config: AlertsConfig,
    secret: str | None,
) -> AlertDelivery:
    try:
        return _deliver(channel, target, attempt, config, secret)
    except Exception as exc:  # the error boundary: an alert must never fail the run
        message = f"{type(exc).__name__}: {exc}"
        if secret:
            message = _scrub(message, secret, target)
        return AlertDelivery(channel, target, False, 1, None, f"unexpected error: {message}")


def _summary_event(
    name: str, pipeline: str, incidents: list[Incident], run_id: str | None
) -> dict[str, Any]:
    worst = max((i.severity for i in incidents), key=rank)
    verb = name.split(".")[-1]
    titles = "\n".join(f"#{i.id} {i.title}" for i in incidents[:10])
    more = len(incidents) - 10
    return {
        "event": name,
        "incident_id": None,
        "incident_ids": [i.id for i in incidents],
        "count": len(incidents),
        "pipeline": pipeline,
        "kind": "summary",
        "severity": worst,
        "title": f"{len(incidents)} incidents {verb} in pipeline {pipeline!r}",
        "detail": titles + (f"\n… and {more} more (steadycast incidents)" if more > 0 else ""),
        "run_id": run_id,
    }


def notify(
    config: AlertsConfig,
    changes: IncidentChanges,
    control_path: Path | None,
    pipeline: str,
    run_id: str | None = None,
) -> int:
    """Alert on what a run changed: opened and resolved incidents (re-sightings are silent).

    More than ``max_per_run`` alertable incidents of one event become one summary alert, so a
    fleet-wide problem is one message, not ten thousand. The alerts are queued and sent in the
    background (``flush`` waits for them); returns how many were queued. Never raises.
    """
    if not (_webhook_urls(config) or config.command):
        return 0
    events: list[dict[str, Any]] = []
    batches: Iterable[tuple[str, list[Incident]]] = (
        ("incident.opened", changes.opened),
        ("incident.resolved", changes.resolved),
    )
    for name, found in batches:
        if name not in config.events:
            continue
        alertable = [i for i in found if rank(i.severity, unknown=2) >= rank(config.min_severity)]
        if len(alertable) > config.max_per_run:
            events.append(_summary_event(name, pipeline, alertable, run_id))
        else:
            events += [incident_event(name, i) for i in alertable]
    seen: dict[str | None, dict[str, Any]] = {}
    for event in events:
        about = event.get("run_id") or run_id
        if about not in seen:  # one look-up per run, not per incident
            seen[about] = links(config, control_path, pipeline, about)
        event.update(seen[about])
        OUTBOX.put(functools.partial(_send_queued, config, event, control_path))
    return len(events)


def flush(timeout_s: float = 30.0) -> bool:
    """Wait until every queued alert is delivered or given up (at most ``timeout_s``); True
    when the queue is empty. For callers that need the outcome now: a test, a notebook."""
    return OUTBOX.flush(timeout_s)


def _send_queued(config: AlertsConfig, event: Mapping[str, Any], control_path: Path | None) -> None:
    """Send one queued alert, then open or resolve the pipeline's "alerts undeliverable"
    incident by how it went."""
    deliveries = send_alert(config, event, control_path)
    if control_path is None or not deliveries:
        return
    pipeline = str(event.get("pipeline") or "")
    failed = [d for d in deliveries if not d.ok]
    found = [_undeliverable(pipeline, failed)] if failed else []
    subject = str(event.get("run_id") or "alerts")
    try:
        incidents.record_findings(control_path, pipeline, subject, found, ["alerts"])
    except (sqlite3.Error, OSError, SteadycastError) as exc:
        log.warning("could not record the alert outcome as an incident: %s", exc)


def _undeliverable(pipeline: str, failed: list[AlertDelivery]) -> Finding:
    """``alerts:PIPELINE``: one incident however many alerts fail, resolved by the next one
    delivered. Not alerted itself: the channel it would go through is the one failing."""
    where = "; ".join(f"{d.channel} {d.target}: {d.error}" for d in failed)
    return Finding(
        incidents.fingerprint("alerts", pipeline),
        "alerts",
        "error",
        f"alerts undeliverable for pipeline {pipeline!r}",
        f"{where[:1500]}. Check the [alerts] table (pipelines/{pipeline}.toml, or "
        "steadycast.toml for the workspace's channels) and that the receiver is up; the audit "
        "log (alert.failed) has every attempt.",
    )
