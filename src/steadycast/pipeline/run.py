"""One run of a pipeline, as a declared list of stages: snapshot -> check -> forecast -> gate
-> publish or hold; then what the run found goes to incidents and alerts, and the SLA is watched.

Each stage is a function of its own module with a typed input and output, measured and recorded
in the control plane as it goes (``RunScope.stage``), so a run that dies leaves a record of
where and why. The run takes the pipeline lock, holds the store only to read its snapshot and to
write its results, and works partition by partition with model code isolated in worker
processes. ``continue_stopped_run`` is the same list from the forecast on, for a run its data
checks stopped that a person approved.
"""

from __future__ import annotations

import logging
import re
import traceback
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from steadycast.config import PipelineConfig
from steadycast.engines import check_engine
from steadycast.engines.pool import PartitionPool, processes_for
from steadycast.errors import NotFoundError, SteadycastError, UsageError
from steadycast.ops import advice, watch
from steadycast.ops.logging import run_context
from steadycast.pipeline.checking import Checked, run_checks
from steadycast.pipeline.failure import failure_over, record_failure
from steadycast.pipeline.forecast_stage import Forecast, forecast
from steadycast.pipeline.gating import Judged, findings, judge
from steadycast.pipeline.override import Override, override_stop
from steadycast.pipeline.partition_work import forecast_one_partition
from steadycast.pipeline.publish import Audit, hold, publish
from steadycast.pipeline.scope import (
    STAGES,
    Progress,
    RunResult,
    RunScope,
    config_digest,
    new_run_id,
)
from steadycast.pipeline.snapshot import Snapshot, take_snapshot
from steadycast.pipeline.start import check_candidates, choose_engine, opening_detail, previous_run
from steadycast.pipeline.unchanged import unchanged_since
from steadycast.quality import checks
from steadycast.storage import control, releases, runlog
from steadycast.workspace import Workspace

__all__ = [
    "STAGES",
    "Override",
    "RunResult",
    "continue_stopped_run",
    "forecast_one_partition",
    "run_pipeline",
]

log = logging.getLogger(__name__)


def run_pipeline(
    ws: Workspace,
    pipeline: str,
    *,
    progress: Progress | None = None,
    engine: str | None = None,
    spark_master: str | None = None,
    skip_unchanged: bool = False,
    run_id: str | None = None,
) -> RunResult:
    """Run a pipeline end to end; the result says what happened (it also records it).

    ``engine`` ("local" or "spark") and ``spark_master`` override the pipeline's ``[engine]``
    table for this run; the release is the same on either engine. With ``skip_unchanged``
    (what ``steadycast run`` does unless ``--force``), a run that finds the same data and
    configuration as the last published or held run stops before its first stage: status
    ``skipped``, no run record, no release (``pipeline.unchanged``). ``run_id``: the id to
    record the run under, chosen by whoever started it (the server names it before the run
    starts so a caller can poll it); it has the form of ``new_run_id``'s.
    """
    cfg = choose_engine(ws.pipeline(pipeline), engine, spark_master)
    check_candidates(cfg)
    check_engine(cfg.engine, cfg.name)
    run_id = _given_run_id(pipeline, run_id) if run_id else new_run_id(pipeline)
    scope = RunScope(ws, cfg, run_id, RunResult(run_id, pipeline, "failed"), progress=progress)
    result = scope.result
    trace: str | None = None
    with runlog.pipeline_lock(ws.control_path, pipeline, run_id):
        # Under the lock: a run in progress is named (it may be about to publish new data).
        same = unchanged_since(ws, cfg) if skip_unchanged else None
        if same is not None:
            log.info("%s: run skipped: %s", pipeline, same.message)
            result.status = "skipped"
            result.release_id = releases.current_id(ws.releases_dir, pipeline)  # still served
            result.skipped = same.as_dict()
            # Nothing new to run, but a sink behind the current release is delivered again.
            result.sinks = _follow_sinks(ws, cfg, None, published=False)
            return result
        runlog.start_run(ws.control_path, run_id, pipeline, cfg.engine.name, config_digest(cfg))
        control.audit(ws.control_path, "run.started", pipeline=pipeline, subject=run_id)
        try:
            with run_context(run_id, pipeline):
                log.info("run started")
                _execute(scope)
                log.info("run finished: %s", result.status)
        except SteadycastError as exc:
            result.error = str(exc)
            # What it wraps (a Spark worker's exception, a library's) keeps its traceback on record.
            cause = exc.__cause__
            trace = "".join(traceback.format_exception(cause, limit=20)) if cause else None
        except Exception as exc:
            result.error = f"internal error: {type(exc).__name__}: {exc}"
            record_failure(ws, cfg, run_id, result, traceback.format_exc(limit=20))
            exc.add_note(
                f"in run {run_id}; its traceback is kept in the run's record: "
                f"{advice.command(ws.root, 'runs', pipeline, '--json')}"
            )
            raise
        finally:
            result.stages = scope.stage_dicts()
        if result.error is not None and result.status != "held":
            record_failure(ws, cfg, run_id, result, trace)
        else:
            failure_over(ws, cfg, run_id)
        # A published run delivered as it published; any other run retries the sinks behind.
        result.sinks = _follow_sinks(ws, cfg, run_id, published=result.status == "published")
    return result


def _given_run_id(pipeline: str, run_id: str) -> str:
    """A run id chosen by the caller, once it has ``new_run_id``'s form (it names a folder)."""
    if not re.fullmatch(re.escape(pipeline) + r"-\d{8}T\d{6}Z-[0-9a-f]{4,32}", run_id):
        raise UsageError(
            f"run id {run_id[:80]!r} is not of the form {pipeline}-YYYYMMDDTHHMMSSZ-HEX"
        )
    return run_id


def _follow_sinks(
    ws: Workspace, cfg: PipelineConfig, subject: str | None, *, published: bool
) -> list[dict[str, Any]]:
    """Each sink's state after the run (``sinks/deliver.py``): the sinks a published run just
    wrote, or, for any other run, every sink behind the current release written again."""
    if not cfg.sinks:
        return []
    from steadycast.sinks.deliver import deliver, sink_states

    found = sink_states(ws, cfg) if published else deliver(ws, cfg, subject)
    return [d.as_dict() for d in found]


def _execute(scope: RunScope, override: Override | None = None) -> None:
    """The stages of one run. With ``override`` (an approval of a run its data checks stopped),
    the run goes on from its own snapshot and checks, past the stop, and publishes whatever the
    output gate says (its results are recorded)."""
    scope.run_dir.mkdir(parents=True, exist_ok=True)
    if override is None:
        previous = previous_run(scope.ws.control_path, scope.pipeline, scope.run_id)
        detail = opening_detail(scope, previous)
        snap = take_snapshot(scope)
    else:
        previous, detail, snap = None, override.detail, override.snapshot
    # One process per core works on partitions, for the checks and then the forecasts.
    processes = processes_for(scope.cfg.forecast.workers, len({p.parent for p in snap.parts}))
    with PartitionPool(processes) as pool:
        if override is None:
            baseline = previous_run(
                scope.ws.control_path, scope.pipeline, scope.run_id, published_first=True
            )
            checked = run_checks(scope, snap, baseline, pool)
            detail.update(_checked_detail(snap, checked))
        else:
            checked = override.checked
        last_published = _last_published(scope)
        made = Forecast()
        if not checks.stop_results(checked.results):
            made = forecast(scope, snap, checked, last_published, pool, resume=override is None)
            detail.update(made.detail)
    judged = judge(scope, made, checked, last_published)
    detail["gate"] = [r.record() for r in judged.decision.results]
    found, kinds = findings(
        scope.pipeline,
        scope.run_id,
        checked,
        judged.decision,
        made.plugin_messages,
        approved=bool(override),
    )
    # Judged: the run's own copies can go before the release is written (gigabytes at a
    # million series).
    del made, last_published
    if judged.decision.passed or override is not None:
        _publish(scope, judged, detail, override)
    else:
        _hold(scope, judged, detail)
    watch.record_and_notify(scope.ws, scope.cfg.alerts, scope.pipeline, scope.run_id, found, kinds)
    newest = pd.Timestamp(snap.newest).to_pydatetime() if snap.newest else None
    watch.watch_sla(scope.ws, scope.cfg, scope.run_id, datetime.now(UTC), newest=newest)


def _checked_detail(snap: Snapshot, checked: Checked) -> dict[str, Any]:
    """What the next run needs of this one's checks (volume parity, the newest delivery)."""
    return {
        "check_figures": checked.figures.as_dict(),
        "newest": snap.newest,
        "delivered_after": checked.delivered_after,
    }


def _last_published(scope: RunScope) -> pd.DataFrame | None:
    """The forecasts of the current release: the last resort of the fallback chain, what
    excluded series carry over, and what the gate measures jumps against."""
    current = releases.current(scope.ws.releases_dir, scope.pipeline)
    return releases.read_forecasts(current) if current else None


def _publish(
    scope: RunScope, judged: Judged, detail: dict[str, Any], override: Override | None
) -> None:
    """Publish stage: the release, the run's record and the audit entry."""
    result, outputs = scope.result, judged.outputs
    if override is not None:
        outputs = replace(
            outputs, meta={**outputs.meta, "approved": True, "approved_reason": override.reason}
        )
    counts = {"series": result.series, "fallback_series": result.fallback_series}
    with scope.stage("publish") as rec:
        rec.rows_in = rec.rows_out = len(outputs.export)
        release = publish(
            scope.ws,
            scope.pipeline,
            scope.run_id,
            outputs,
            Audit("release.published", detail=counts),
            finished_at=control.utcnow(),
            detail=detail,
            **counts,
        )
    result.release_id = release.release_id
    result.status = "published"


def _hold(scope: RunScope, judged: Judged, detail: dict[str, Any]) -> None:
    """Hold: the current release stays; the forecasts are kept for inspection and approval."""
    result = scope.result
    result.status = "held"
    result.error = judged.decision.summary()
    hold(
        scope.ws,
        scope.pipeline,
        scope.run_id,
        judged.outputs,
        result.error,
        finished_at=control.utcnow(),
        series=result.series,
        fallback_series=result.fallback_series,
        detail=detail,
    )


def continue_stopped_run(
    ws: Workspace, run_id: str, reason: str, *, actor: str | None = None
) -> tuple[RunResult, Override]:
    """Continue a run its data checks stopped, past the stop, as a person approved it: from
    its own snapshot (not the store as it is now), with the checks that stopped it lifted;
    forecast, run the output gate for the record (it does not hold), publish.

    The run keeps its id and record and stays held until it publishes: an approval that fails
    part-way (killed, out of memory) leaves it held, and approving it again resumes from the
    partitions it finished. Auditing the approval is the caller's (``levers.approve``).
    """
    run = runlog.get_run(ws.control_path, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id!r} in {ws.root}")
    pipeline = run["pipeline"]
    cfg = ws.pipeline(pipeline)
    check_candidates(cfg)
    check_engine(cfg.engine, cfg.name)
    scope = RunScope(ws, cfg, run_id, RunResult(run_id, pipeline, "held"))
    with runlog.pipeline_lock(ws.control_path, pipeline, run_id):
        run = runlog.get_run(ws.control_path, run_id) or run  # again, under the lock
        if run["status"] != "held":
            raise UsageError(
                f"run {run_id} is {run['status']}, not held; only a held run can be approved"
            )
        override = override_stop(ws, cfg, run, reason, actor)
        try:
            with run_context(run_id, pipeline):
                log.info(
                    "approved past its data checks (%s): continuing", ", ".join(override.checks)
                )
                _execute(scope, override)
                log.info("run finished: %s", scope.result.status)
        except SteadycastError as exc:
            # Same error (type, exit code), saying what it means for the run.
            exc.args = (
                f"approving run {run_id} failed while continuing it: {exc}; the run is still "
                "held and the current release is unchanged",
            )
            raise
        except Exception as exc:
            log.exception("approving run %s failed", run_id)
            raise SteadycastError(
                f"approving run {run_id} failed while continuing it (internal error: "
                f"{type(exc).__name__}: {exc}); the run is still held and the current release "
                "is unchanged"
            ) from exc
        finally:
            scope.result.stages = scope.stage_dicts()
    return scope.result, override
