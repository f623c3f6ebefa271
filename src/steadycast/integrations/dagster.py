"""Dagster: each pipeline of a workspace as three assets, ingest -> run -> release, the gate's
rules as asset checks on the release, and a sensor that starts the pipeline's job when new files
land under its ``[source] path``.

The assets call the public Python API in the step's own process (no shell-out): what Dagster
shows is what ``steadycast run --json`` prints, as materialisation metadata. A run the gate holds
is a decision of the platform, not a failure of it: the run asset materialises with status
``held``, the release asset with the release still served, and the release's checks fail
(severity ERROR for blocking rules, WARN for the others), each with the rule's figure, its limit
and the command that publishes the run. Only a run that failed (the platform could not finish
it) fails the Dagster step. See "Dagster" in docs/operations.md.

Install with ``pip install 'steadycast[dagster]'``; load with ``definitions(workspace)`` or, for
``dagster dev -m steadycast.integrations.dagster_defs``, from ``$STEADYCAST_WORKSPACE``.
"""

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import dagster as dg
except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
    raise ImportError(
        "the Dagster integration needs Dagster: pip install 'steadycast[dagster]'"
    ) from exc

from steadycast.config import GateConfig, PipelineConfig
from steadycast.errors import ConfigError, SteadycastError, UsageError
from steadycast.ingestion.objectstore import is_object_url
from steadycast.ingestion.sources import expand, ingest_configured
from steadycast.ops import advice
from steadycast.pipeline.unchanged import last_decided
from steadycast.quality.gate import build_gate_specs
from steadycast.storage import releases, store
from steadycast.workspace import Workspace

__all__ = ["RunSettings", "definitions", "new_files", "pipeline_assets"]

#: The check on the run's decision as a whole, beside one check per gate rule.
DECISION_CHECK = "published"
#: Series named in a check's metadata before the rest are counted.
NAMED_SERIES = 20


class RunSettings(dg.Config):  # type: ignore[misc]
    """Launch settings of the run asset: ``force`` runs even when no new data arrived."""

    force: bool = False


def definitions(workspace: Path | str | None = None) -> dg.Definitions:
    """Every pipeline of the workspace as assets, checks, a job and (for a local ``[source]
    path``) a sensor. ``workspace``: a directory, else ``$STEADYCAST_WORKSPACE``, else the
    current directory (as the command line)."""
    ws = Workspace.open(workspace)
    assets: list[dg.AssetsDefinition] = []
    jobs: list[Any] = []
    sensors: list[dg.SensorDefinition] = []
    names = ws.pipeline_names()
    _refuse_clashes(names)
    for name in names:
        cfg = _config(ws, name)
        made = pipeline_assets(ws, name, cfg)
        assets += made
        job = dg.define_asset_job(
            f"{_key(name)}_job",
            selection=dg.AssetSelection.assets(*made),
            description=f"Ingest, run and publish pipeline {name!r} of {ws.root}.",
        )
        jobs.append(job)
        if _local_source(cfg) is not None:
            sensors.append(_new_files_sensor(ws, name, job))
    return dg.Definitions(assets=assets, jobs=jobs, sensors=sensors)


def pipeline_assets(
    ws: Workspace, name: str, cfg: PipelineConfig | None = None
) -> list[dg.AssetsDefinition]:
    """The assets ``<p>_ingest``, ``<p>_run`` and ``<p>_release`` of one pipeline, in the order
    they depend on each other; the release carries one check per enabled gate rule."""
    key, group = _key(name), _key(name)
    rules = _rules(cfg)

    @dg.asset(
        name=f"{key}_ingest",
        group_name=group,
        description=f"The configured source of pipeline {name!r} ingested into the store.",
    )
    def ingest_asset() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=_ingest(ws, name))

    @dg.asset(
        name=f"{key}_run",
        group_name=group,
        deps=[ingest_asset],
        description=(
            f"A run of pipeline {name!r}: check, backtest, forecast, gate; skipped when no new "
            "data arrived since the last decided run (unless force)."
        ),
    )
    def run_asset(config: RunSettings) -> dg.MaterializeResult:
        meta = _run(ws, name, force=config.force)
        # A skip repeats the run it found nothing new since: the same data version.
        return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(meta["decided_run"]))

    @dg.asset(
        name=f"{key}_release",
        group_name=group,
        deps=[run_asset],
        check_specs=[
            dg.AssetCheckSpec(rule, asset=f"{key}_release", description=text)
            for rule, text in rules.items()
        ],
        description=f"The release of pipeline {name!r} being served, with its gate's verdict.",
    )
    def release_asset() -> dg.MaterializeResult:
        decided = last_decided(ws, name)
        checks = list(_check_results(ws, name, decided, rules))
        meta = _release(ws, name, decided)
        return dg.MaterializeResult(
            metadata=meta,
            check_results=checks,
            data_version=dg.DataVersion(meta["release_id"] or "none"),
        )

    return [ingest_asset, run_asset, release_asset]


def new_files(ws: Workspace, cfg: PipelineConfig) -> list[Path]:
    """Files under the pipeline's local ``[source] path`` that the batch ledger has not seen
    under their name, sorted; empty when the source is not a local folder, file or glob."""
    files = _source_files(ws, cfg)
    if not files:
        return []
    with store.reading(ws.store_path) as con:
        seen = {
            str(row[0])
            for row in con.execute(
                "SELECT DISTINCT file FROM batches WHERE pipeline = ?", [cfg.name]
            ).fetchall()
        }
    return [f for f in files if str(f) not in seen and str(f.resolve()) not in seen]


# -- the assets' work ----------------------------------------------------------------------


def _ingest(ws: Workspace, name: str) -> dict[str, Any]:
    """Ingest the configured source; without one, say so (files come in by ``steadycast
    ingest`` or the HTTP API) and let the run work on what the store holds."""
    cfg = ws.pipeline(name)
    results = _ingest_configured(ws, cfg)
    if results is None:
        return {
            "batches": 0,
            "note": (
                f"pipeline {name!r} has no [source] path or query: nothing to ingest here; "
                f"the run works on the stored data (ingest files with "
                f"{advice.command(ws.root, 'ingest', name, 'FILE')})"
            ),
        }
    rows = [r.contract() for r in results]
    return {
        "batches": len(rows),
        "ingested": sum(r["status"] == "ingested" for r in rows),
        "skipped": sum(r["status"] == "skipped" for r in rows),
        "rows_stored": sum(int(r["rows_stored"]) for r in rows),
        "rows_quarantined": sum(int(r["rows_quarantined"]) for r in rows),
        "files": dg.MetadataValue.json(rows),
    }


def _ingest_configured(ws: Workspace, cfg: PipelineConfig) -> list[Any] | None:
    """The batches of the configured source, or ``None`` when the pipeline names none."""
    if not cfg.source.path and not cfg.source.query:
        return None
    return ingest_configured(ws, cfg)


def _run(ws: Workspace, name: str, *, force: bool) -> dict[str, Any]:
    """Run the pipeline; a failed run fails the step (with the run's error), a held or skipped
    one does not (see the module's docstring)."""
    from steadycast import run_pipeline

    result = run_pipeline(ws, name, skip_unchanged=not force)
    out = result.as_dict()
    meta: dict[str, Any] = {
        "status": result.status,
        "run_id": out["run_id"] or "",
        "release_id": result.release_id or "",
        "series": result.series,
        "fallback_series": result.fallback_series,
    }
    if result.status == "failed":
        raise dg.Failure(
            description=f"run {result.run_id} of pipeline {name!r} failed: {result.error}",
            metadata={**meta, "stages": dg.MetadataValue.json(result.stages)},
        )
    meta["decided_run"] = result.run_id
    if result.sinks:  # a sink behind is exit 4 on the command line: shown here, not hidden
        meta["sinks"] = dg.MetadataValue.json(result.sinks)
        behind = [str(s["sink"]) for s in result.sinks if s.get("state") == "pending"]
        meta["sinks_behind"] = ", ".join(behind) or "none"
    if result.status == "skipped" and result.skipped:
        meta["skipped"] = str(result.skipped.get("message", ""))
        meta["decided_run"] = str(result.skipped.get("since_run", ""))
    if result.status == "held":
        meta["held"] = "; ".join(str(g["detail"]) for g in result.gate if not g["passed"])
        meta["approve"] = advice.approve(ws.root, result.run_id)
    if result.stages:
        meta["stages"] = dg.MetadataValue.json(result.stages)
        meta["cpu_s"] = round(sum(float(s.get("cpu_s") or 0) for s in result.stages), 3)
        meta["wall_s"] = round(sum(float(s.get("wall_s") or 0) for s in result.stages), 3)
    return meta


def _release(ws: Workspace, name: str, decided: dict[str, Any] | None) -> dict[str, Any]:
    """The served release's figures; a held run does not change them (the last good release
    stays served)."""
    current = releases.current(ws.releases_dir, name)
    meta: dict[str, Any] = {"release_id": "", "rows": 0, "series": 0, "published_at": ""}
    if current is not None:
        pointer = releases.pipeline_dir(ws.releases_dir, name) / releases.POINTER
        since = json.loads(pointer.read_text(encoding="utf-8")).get("since", "")
        meta = {
            "release_id": current.release_id,
            "rows": int(current.manifest.get("rows", 0)),
            "series": int(current.manifest.get("series", 0)),
            "fallback_series": int(current.manifest.get("fallback_series", 0) or 0),
            "published_at": str(since),
            "run_id": str(current.manifest.get("run_id", "")),
            "path": dg.MetadataValue.path(str(current.forecasts_path)),
        }
    if decided is not None:
        meta["decided_run"] = decided["run_id"]
        meta["decided_status"] = decided["status"]
    return meta


def _check_results(
    ws: Workspace, name: str, decided: dict[str, Any] | None, rules: dict[str, str]
) -> Iterator[dg.AssetCheckResult]:
    """One result per declared check, from the gate results the last decided run recorded."""
    if decided is None:
        for rule in rules:
            yield dg.AssetCheckResult(
                check_name=rule,
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"pipeline {name!r} has no published or held run yet",
            )
        return
    run_id, status = str(decided["run_id"]), str(decided["status"])
    detail = json.loads(decided.get("detail") or "{}")
    recorded = {str(g["check"]): g for g in detail.get("gate", [])}
    for rule in rules:
        if rule == DECISION_CHECK:
            yield _decision(ws, run_id, status, recorded)
            continue
        found = recorded.get(rule)
        if found is None:
            yield dg.AssetCheckResult(
                check_name=rule,
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"run {run_id} recorded no result for this rule",
                metadata={"run_id": run_id},
            )
            continue
        yield dg.AssetCheckResult(
            check_name=rule,
            passed=bool(found["passed"]),
            severity=dg.AssetCheckSeverity.ERROR
            if found.get("blocking", True)
            else dg.AssetCheckSeverity.WARN,
            description=str(found.get("detail", "")),
            metadata=_figures(run_id, found),
        )


def _decision(
    ws: Workspace, run_id: str, status: str, recorded: dict[str, dict[str, Any]]
) -> dg.AssetCheckResult:
    """The run's decision: published, or held with the rules that held it and the lever."""
    holding = [g["check"] for g in recorded.values() if not g["passed"] and g.get("blocking")]
    meta: dict[str, Any] = {"run_id": run_id, "status": status, "holding": ", ".join(holding)}
    if status == "held":
        meta["approve"] = advice.approve(ws.root, run_id)
        text = f"run {run_id} was held by the gate ({', '.join(holding) or 'see its record'})"
    else:
        text = f"run {run_id} was published"
    return dg.AssetCheckResult(
        check_name=DECISION_CHECK,
        passed=status == "published",
        severity=dg.AssetCheckSeverity.ERROR,
        description=text,
        metadata=meta,
    )


def _figures(run_id: str, found: dict[str, Any]) -> dict[str, Any]:
    """A gate result's figures as check metadata (no empty values: Dagster shows them all)."""
    series = [str(s) for s in found.get("series") or []]
    meta: dict[str, Any] = {
        "run_id": run_id,
        "blocking": bool(found.get("blocking", True)),
        "severity": str(found.get("severity", "")),
    }
    for field in ("value", "limit"):
        if found.get(field) is not None:
            meta[field] = float(found[field])
    if series:
        shown = ", ".join(series[:NAMED_SERIES])
        more = len(series) - NAMED_SERIES
        meta["series"] = shown + (f" and {more} more" if more > 0 else "")
    return meta


# -- the sensor ----------------------------------------------------------------------------


def _new_files_sensor(ws: Workspace, name: str, job: Any) -> dg.SensorDefinition:
    """Request a run of the pipeline's job when files not in the ledger appear; the cursor keeps
    the newest file seen and the set last requested, so a set waiting for its run is asked once."""

    @dg.sensor(
        name=f"{_key(name)}_new_files",
        job=job,
        minimum_interval_seconds=60,
        description=f"Starts {_key(name)}_job when new files land under [source] path.",
    )
    def new_files_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        try:
            cfg = ws.pipeline(name)
            fresh = new_files(ws, cfg)
        except SteadycastError as exc:  # a broken file, a store busy past its wait
            return dg.SkipReason(f"pipeline {name!r}: {exc}")
        if not fresh:
            return dg.SkipReason(f"no new files for pipeline {name!r}")
        try:
            key = _files_key(fresh)
            newest = max(fresh, key=lambda f: (f.stat().st_mtime_ns, str(f)))
        except OSError as exc:  # a file moved away while being looked at: look again later
            return dg.SkipReason(f"pipeline {name!r}: {exc}")
        previous = json.loads(context.cursor) if context.cursor else {}
        if previous.get("requested") == key:
            return dg.SkipReason(
                f"{len(fresh)} new file(s) for pipeline {name!r} already requested; "
                "waiting for that run to ingest them"
            )
        cursor = json.dumps({"newest": str(newest), "requested": key})
        request = dg.RunRequest(
            run_key=f"{name}:{key}",
            tags={"steadycast/pipeline": name, "steadycast/new_files": str(len(fresh))},
        )
        return dg.SensorResult(run_requests=[request], cursor=cursor)

    return new_files_sensor


def _files_key(files: list[Path]) -> str:
    """A short name for a set of files as they are now (path, size, modification time)."""
    text = "\n".join(f"{f}\t{f.stat().st_size}\t{f.stat().st_mtime_ns}" for f in files)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- helpers -------------------------------------------------------------------------------


def _key(name: str) -> str:
    """A pipeline name as a Dagster name (letters, digits and underscores)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _refuse_clashes(names: list[str]) -> None:
    """Two pipelines whose names become the same Dagster name would be one asset."""
    taken: dict[str, str] = {}
    for name in names:
        other = taken.setdefault(_key(name), name)
        if other != name:
            raise ConfigError(
                f"pipelines {other!r} and {name!r} both become {_key(name)!r} in Dagster (which "
                "allows only letters, digits and _ in names); rename one of the pipeline files"
            )


def _config(ws: Workspace, name: str) -> PipelineConfig | None:
    """The pipeline's config, or ``None`` when its file does not load: the assets are still
    defined (with the default gate's checks), and the run shows the file's error."""
    try:
        return ws.pipeline(name)
    except ConfigError:
        return None


def _rules(cfg: PipelineConfig | None) -> dict[str, str]:
    """The checks of the release: the decision, then each enabled gate rule."""
    specs = build_gate_specs(cfg.gate if cfg is not None else GateConfig())
    rules = {DECISION_CHECK: "The last decided run was published, not held by the gate."}
    for spec in specs:
        if spec.enabled:
            how = "holds the run" if spec.blocking else "warns only"
            rules[spec.name] = f"Gate rule {spec.name} ({how} when it fails)."
    return rules


def _local_source(cfg: PipelineConfig | None) -> str | None:
    """The pipeline's ``[source] path`` when it names local files (not object storage)."""
    path = cfg.source.path if cfg is not None else ""
    if not path or is_object_url(path):
        return None
    return path


def _source_files(ws: Workspace, cfg: PipelineConfig) -> list[Path]:
    """The input files a local ``[source] path`` names, expanded as ``steadycast ingest``
    expands it (a file, a folder's data files, a hive dataset, a glob); none when it names
    nothing yet (an empty inbox is not an error for a sensor)."""
    text = _local_source(cfg)
    if text is None:
        return []
    try:
        inputs = expand([text], base=ws.root)
    except UsageError:
        return []
    return [
        Path(i.name) for i in inputs if i.kind == "file" and i.path is not None and i.path.exists()
    ]
