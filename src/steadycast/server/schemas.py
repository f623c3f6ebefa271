"""Request and response models of the HTTP API; they make the OpenAPI document complete.

A record the product already defines is not written again here: ``IncidentModel`` is built
from the ``Incident`` dataclass of ``ops/incidents.py``, so the API cannot drift from the store.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from steadycast.ops.incidents import Incident

_DESCRIPTIONS = {
    400: "a parameter is not valid (the message names it)",
    401: "no `Authorization: Bearer TOKEN` header",
    403: "the token is wrong, or no token is configured on the server",
    404: "the pipeline, series, release, run or incident does not exist (named in the message)",
    409: "a run of the pipeline is already in progress (named in the message); poll it",
    422: "the request body or a parameter has the wrong shape",
    503: "the store is in use by another process; try again",
}


class ErrorBody(BaseModel):
    """Every error response: a short kind and a sentence naming the thing and the fix."""

    error: str
    detail: Any = None


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error codes a route can answer, all with the uniform body."""
    return {c: {"model": ErrorBody, "description": _DESCRIPTIONS[c]} for c in codes}


class Health(BaseModel):
    status: str
    version: str


OUTCOME = (
    "how the run ended and each lever pulled on it since, e.g. 'held, then approved by NAME: "
    "REASON' or 'published, then rolled back by NAME: REASON (release R made current)'"
)


class StageDetail(BaseModel):
    """One recorded stage of a run; ``detail`` is the stage's own record, an object."""

    model_config = ConfigDict(extra="allow")
    name: str
    seq: int
    status: str
    detail: dict[str, Any] | str | None = Field(
        None, description="what the stage recorded (text only for a run recorded as text)"
    )


class RunSummary(BaseModel):
    model_config = ConfigDict(extra="allow")
    run_id: str
    status: str
    started_at: str
    finished_at: str | None = None
    release_id: str | None = None
    series: int | None = None
    fallback_series: int | None = None
    error: str | None = None
    outcome: str | None = Field(None, description=OUTCOME)


class PipelineSummary(BaseModel):
    name: str
    broken: bool = Field(False, description="the pipeline file does not load: nothing runs")
    config_error: str | None = Field(None, description="why the pipeline file does not load")
    last_run: RunSummary | None = None
    gate: list[dict[str, Any]] | None = Field(
        None, description="the last run's gate results, when the run recorded them"
    )
    current_release: str | None = None
    open_incidents: int = 0
    acknowledged_incidents: int = 0


class PipelineList(BaseModel):
    pipelines: list[PipelineSummary]


class ForecastRow(BaseModel):
    """One forecast step; interval columns ``yhat_lo_L``/``yhat_hi_L`` follow per level L."""

    model_config = ConfigDict(extra="allow")
    unique_id: str
    ds: str = Field(description="ISO 8601 in UTC, e.g. 2024-03-11T00:00:00Z")
    yhat: float | None
    model: str | None


class ForecastResponse(BaseModel):
    pipeline: str
    release_id: str
    rows: list[ForecastRow]


class SeriesList(BaseModel):
    pipeline: str
    release_id: str
    total: int
    series: list[str]


class Point(BaseModel):
    ds: str
    y: float


class SeriesDetail(BaseModel):
    pipeline: str
    series_id: str
    release_id: str
    levels: list[int]
    forecast: list[ForecastRow]
    history: list[Point] | None = Field(
        description="the newest observations before the forecast starts; null when the store "
        "was busy"
    )
    actuals: list[Point] | None = Field(
        description="observations that arrived for the forecast's own steps (realised values)"
    )
    provenance: dict[str, Any] | None = Field(
        description="the model that made the forecast and why (selected or which fallback)"
    )
    note: str | None = None


class ReleaseInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    release_id: str
    run_id: str | None = None
    created_at: str | None = None
    rows: int | None = None
    series: int | None = None
    content_sha256: str | None = None
    current: bool


class ReleaseList(BaseModel):
    pipeline: str
    current_release: str | None
    releases: list[ReleaseInfo]


class RollbackRequest(BaseModel):
    to: str | None = Field(None, description="a release id; default: the one before the current")
    reason: str = Field(min_length=1, description="why; it goes to the audit log")


class ApproveRequest(BaseModel):
    reason: str = Field(min_length=1, description="why; it goes to the audit log")


class NoteRequest(BaseModel):
    note: str | None = Field(None, description="a note for the audit log")


class LeverResult(BaseModel):
    pipeline: str
    release_id: str
    actor: str


class BatchResult(BaseModel):
    """One batch of an ingest, as ``steadycast ingest --json`` prints it."""

    model_config = ConfigDict(extra="allow")
    file: str
    batch_id: str
    status: str = Field(description="ingested, or skipped (already ingested)")
    rows_read: int
    rows_stored: int
    rows_quarantined: int
    quarantine_reasons: dict[str, int]


class IngestResult(BaseModel):
    pipeline: str
    batches: list[BatchResult]
    actor: str


class RunRequest(BaseModel):
    force: bool = Field(
        False, description="run even when no data or setting changed since the last decided run"
    )


class RunStarted(BaseModel):
    pipeline: str
    run_id: str = Field(description="the id the run is recorded under")
    status: str = Field(description="always 'started'")
    poll: str = Field(description="GET it until `finished` is true")
    actor: str


class RunProgress(BaseModel):
    """A run started over HTTP: where it is, and how it ended."""

    pipeline: str
    run_id: str
    status: str = Field(
        description="starting, running, then published, held, failed or skipped (nothing new)"
    )
    finished: bool
    exit_code: int | None = Field(
        None,
        description="as from the CLI: 0 published or skipped, 3 held, 1 failed, 2 "
        "configuration error, 4 published with a sink behind; null while it runs",
    )
    release_id: str | None = None
    error: str | None = None
    sinks: list[dict[str, Any]] = Field(default_factory=list)


class RunDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    run_id: str
    pipeline: str
    status: str
    started_at: str
    outcome: str = Field(description=OUTCOME)
    stages: list[StageDetail]
    models: list[dict[str, Any]]
    detail: dict[str, Any] | str | None = Field(
        None, description="what the run recorded: its config, gate results, what came after"
    )


def _model_of(record: type, name: str) -> type[BaseModel]:
    """A response model with the fields, types and defaults of a dataclass record."""
    hints = typing.get_type_hints(record)
    fields: dict[str, Any] = {
        f.name: (hints[f.name], ... if f.default is dataclasses.MISSING else f.default)
        for f in dataclasses.fields(record)
    }
    return create_model(name, **fields)


IncidentModel = _model_of(Incident, "IncidentModel")


class IncidentList(BaseModel):
    # A model built at import time is a value to mypy; pydantic reads it as the type it is.
    incidents: list[IncidentModel]  # type: ignore[valid-type]


class AuditEntry(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    pipeline: str | None
    subject: str | None
    reason: str | None
    detail: Any = None


class AuditList(BaseModel):
    entries: list[AuditEntry]


class QuarantineCount(BaseModel):
    reason: str
    rows: int


class Quality(BaseModel):
    pipeline: str
    store_readable: bool
    quarantined_rows: int | None
    quarantine: list[QuarantineCount]
    checks: list[dict[str, Any]] | None = Field(
        description="one page (limit, offset) of the latest run's check results, failures "
        "first, when recorded"
    )
    checks_run_id: str | None = None
    checks_total: int = Field(0, description="check results of that run in all, over every page")
    limit: int = Field(100, description="the page size asked for")
    offset: int = Field(0, description="results skipped before this page")


class Hogs(BaseModel):
    since: str
    until: str
    by: str
    pipelines: list[dict[str, Any]]
    stages: list[dict[str, Any]]
    models: list[dict[str, Any]]
