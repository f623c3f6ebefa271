"""What a run settles before its first stage: the engine, the models, the config's audit trail
and the realised accuracy of earlier releases.

A bad engine or model name is a configuration error before the run starts; a changed pipeline
file goes to the audit log with its diff; monitoring runs first but never costs a forecast.
"""

from __future__ import annotations

import difflib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

from steadycast.config import EngineConfig, PipelineConfig
from steadycast.errors import ConfigError, UsageError
from steadycast.models.registry import SteadycastPluginWarning, create_model
from steadycast.ops import watch
from steadycast.pipeline.scope import RunScope, config_doc, config_lines
from steadycast.storage import control

__all__ = ["check_candidates", "choose_engine", "opening_detail", "previous_run"]

log = logging.getLogger(__name__)


def choose_engine(
    cfg: PipelineConfig, engine: str | None, spark_master: str | None
) -> PipelineConfig:
    """The pipeline's config with the engine the caller chose for this run, if any."""
    if engine is None and spark_master is None:
        return cfg
    chosen = cfg.engine.model_dump()
    if engine is not None:
        if engine not in ("local", "spark"):
            raise UsageError(f"engine {engine!r} is not an engine; use local or spark")
        chosen["name"] = engine
    if spark_master is not None:
        if chosen["name"] != "spark":
            raise UsageError(
                f"a Spark master ({spark_master!r}) was given, but pipeline {cfg.name!r} runs on "
                f"the {chosen['name']} engine; choose the spark engine too (--engine spark)"
            )
        chosen["spark_master"] = spark_master
    return cfg.model_copy(update={"engine": EngineConfig(**chosen)})


def check_candidates(cfg: PipelineConfig) -> None:
    """An unknown model name or a bad parameter is a configuration error before the run starts,
    not a failure found in every worker task later."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SteadycastPluginWarning)
        tiers_used = {"candidates": cfg.models.tier != "fast"}
        tiers_used["fast_candidates"] = cfg.models.tier != "full"
        for key, used in tiers_used.items():
            for name in getattr(cfg.models, key) if used else []:
                try:
                    create_model(name, cfg.models.params.get(name))
                except ConfigError as exc:
                    raise ConfigError(f"pipelines/{cfg.name}.toml: models.{key}: {exc}") from None


def previous_run(
    control_path: Path, pipeline: str, run_id: str, *, published_first: bool = False
) -> dict[str, Any] | None:
    """The last finished (published or held) run of the pipeline before this one, for the
    config diff; with ``published_first``, the last published run when there is one, for the
    run-level checks (volume parity, pass share): a held run is not a baseline, or a re-run of
    the data it held would compare against the fault itself and pass."""
    order = "(status = 'published') DESC, " if published_first else ""
    with control.connect(control_path) as con:
        row = con.execute(
            "SELECT * FROM runs WHERE pipeline = ? AND run_id <> ? AND status IN ('published', 'held') "
            f"ORDER BY {order}started_at DESC LIMIT 1",
            (pipeline, run_id),
        ).fetchone()
    if row is None:
        return None
    run = dict(row)
    run["detail"] = json.loads(run["detail"]) if run.get("detail") else {}
    return run


def opening_detail(scope: RunScope, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Audit a changed pipeline file, watch realised accuracy, and start the run's recorded
    detail with both (the config as run, the monitor's figures)."""
    _audit_config_change(scope, previous)
    scope.result.config = config_doc(scope.cfg)
    return {"config": scope.result.config, "monitor": _watch_accuracy(scope)}


def _audit_config_change(scope: RunScope, previous: dict[str, Any] | None) -> None:
    """A pipeline file that changed since the last run goes to the audit log with its diff."""
    recorded = (previous or {}).get("detail", {}).get("config")
    if recorded is None:
        return
    before, now = config_lines(recorded), config_lines(scope.cfg)
    if before == now:
        return
    diff = list(difflib.unified_diff(before, now, "previous run", "this run", lineterm="", n=1))
    control.audit(
        scope.ws.control_path,
        "config.changed",
        pipeline=scope.pipeline,
        subject=scope.run_id,
        detail={"previous_run": previous["run_id"] if previous else None, "diff": diff},
    )


def _watch_accuracy(scope: RunScope) -> dict[str, Any]:
    """Score earlier releases against the actuals that arrived since (realised accuracy).

    Monitoring must never cost a forecast: an error here is logged and recorded, not raised.
    """
    if not scope.cfg.monitor.enabled:
        return {}
    try:
        return watch.watch_accuracy(scope.ws, scope.cfg, scope.run_id).as_dict()
    except Exception as exc:
        log.exception("realised-accuracy monitoring failed")
        return {"error": f"{type(exc).__name__}: {exc}"}
