"""Request and response models of the HTTP API; they make the OpenAPI document complete."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """Every error response: a short kind and a sentence naming the thing and the fix."""

    error: str
    detail: Any = None


class Health(BaseModel):
    status: str
    version: str


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


class PipelineSummary(BaseModel):
    name: str
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


class RunDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    run_id: str
    pipeline: str
    status: str
    started_at: str
    stages: list[dict[str, Any]]
    models: list[dict[str, Any]]
    detail: Any = None


class IncidentModel(BaseModel):
    id: int
    fingerprint: str
    pipeline: str
    kind: str
    severity: str
    state: str
    title: str
    detail: str | None
    first_seen: str
    last_seen: str
    occurrences: int
    run_id: str | None
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    acknowledge_note: str | None = None
    resolved_by: str | None = None
    resolved_at: str | None = None
    resolution: str | None = None


class IncidentList(BaseModel):
    incidents: list[IncidentModel]


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
        description="the latest run's check results, when recorded"
    )
    checks_run_id: str | None = None


class Hogs(BaseModel):
    since: str
    until: str
    by: str
    pipelines: list[dict[str, Any]]
    stages: list[dict[str, Any]]
    models: list[dict[str, Any]]
