"""``steadycast ingest`` and ``steadycast quarantine``: data in, and the rows turned away."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from steadycast.cli._app import JsonOpt, WorkspaceOpt, emit_json, out, progress
from steadycast.errors import SteadycastError, UsageError

if TYPE_CHECKING:
    from steadycast.ingestion.batch import BatchResult

T = TypeVar("T")


def ingest(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name (pipelines/NAME.toml).")],
    files: Annotated[
        list[str] | None,
        typer.Argument(
            help="CSV (plain or .gz) or Parquet files, folders, quoted globs ('data/*.csv'), "
            "- for stdin, or s3:// URLs; none: the pipeline's [source] path or query.",
            show_default=False,
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
    covariates: Annotated[
        bool,
        typer.Option(
            "--covariates",
            help="The files hold the pipeline's covariates ([covariates] in its file): one "
            "batch per declared column.",
        ),
    ] = False,
) -> None:
    """Store the rows of each file as one batch; bad rows are quarantined with a reason."""
    from steadycast.ingestion.sources import configured_batches, expand, ingest_inputs
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    cfg = ws.pipeline(pipeline)
    if covariates:
        _ingest_covariates(ws, cfg, files or [], json_out)
        return
    with progress(enabled=not json_out) as update:
        if files:
            inputs = expand(files)  # every argument, before anything is stored
            results, failure = _collect(ingest_inputs(ws, cfg, inputs, update))
        else:
            results, failure = _collect(configured_batches(ws, cfg, update))
    if json_out:
        doc: dict[str, Any] = {"pipeline": pipeline, "batches": [_contract(r) for r in results]}
        if failure is not None:
            doc["error"] = str(failure)
        emit_json(doc)
    elif results:
        _print_batches(pipeline, results)
        _print_ignored(results)
        _print_empty(results)
    if failure is not None:
        raise failure


def _contract(result: BatchResult) -> dict[str, Any]:
    """A batch's ``--json`` entry: the contract's fields, and the columns left out when any."""
    doc = result.contract()
    if result.ignored_columns:
        doc["ignored_columns"] = list(result.ignored_columns)
    return doc


def _collect(batches: Iterator[T]) -> tuple[list[T], SteadycastError | None]:
    """What each batch stored, up to the first that failed (and its error): the batches stored
    before a failing one are still reported."""
    results: list[T] = []
    try:
        for result in batches:
            results.append(result)
    except SteadycastError as exc:
        return results, exc
    return results, None


def _print_empty(results: list[BatchResult]) -> None:
    """A batch with no rows (a header-only file, a query whose WHERE matched nothing) is
    stored as such; said in words, since a run after it still finds nothing to forecast."""
    for r in results:
        if r.status == "ingested" and r.rows_read == 0:
            out.print(f"{r.file}: no rows, nothing stored", markup=False, highlight=False)


def _print_ignored(results: list[BatchResult]) -> None:
    """Columns of the input that no key maps: said once per batch, so a column meant to be used
    is not dropped unnoticed."""
    for r in results:
        if r.ignored_columns:
            out.print(
                f"{r.file}: ignored columns: {', '.join(r.ignored_columns)} "
                "(declare them in [covariates] to use them)",
                markup=False,
                highlight=False,
            )


def _ingest_covariates(ws: Any, cfg: Any, files: list[str], json_out: bool) -> None:
    """``ingest --covariates``: each file once per covariate column, reported like batches."""
    from steadycast.ingestion.covariates import ingest_covariates
    from steadycast.ingestion.sources import expand

    if not files:
        raise UsageError(
            f"ingest --covariates needs the covariate files: steadycast ingest {cfg.name} "
            "--covariates FILE..."
        )
    paths = []
    for item in expand(files):
        if item.kind != "file" or item.partitions or item.path is None:
            raise UsageError(
                f"{item.name}: --covariates reads local files (a file, folder or glob); "
                "download it first"
            )
        paths.append(item.path)
    results, failure = _file_by_file(
        paths, lambda file, update: ingest_covariates(ws, cfg, file, progress=update), json_out
    )
    if json_out:
        batches = [{**r.contract(), "covariate": column} for column, r in results]
        doc: dict[str, Any] = {"pipeline": cfg.name, "covariates": True, "batches": batches}
        if failure is not None:
            doc["error"] = str(failure)
        emit_json(doc)
    elif results:
        _print_batches(f"{cfg.name} (covariates)", [r for _, r in results])
    if failure is not None:
        raise failure


def _file_by_file(
    files: list[Path], ingest_one: Callable[[Path, Any], list[T]], json_out: bool
) -> tuple[list[T], SteadycastError | None]:
    """What each file stored, up to the first that failed (and its error): the batches stored
    before a failing file are still reported."""
    results: list[T] = []
    with progress(enabled=not json_out) as update:
        for file in files:
            try:
                results.extend(ingest_one(file, update))
            except SteadycastError as exc:
                return results, exc
    return results, None


def _print_batches(pipeline: str, results: list[BatchResult]) -> None:
    from rich.table import Table

    table = Table(title=f"ingest into {pipeline}", show_lines=False)
    for col in ("file", "batch", "status", "read", "stored", "quarantined", "reasons"):
        table.add_column(
            col, justify="right" if col in ("read", "stored", "quarantined") else "left"
        )
    for r in results:
        reasons = ", ".join(f"{k} {v}" for k, v in r.quarantine_reasons.items())
        table.add_row(
            r.file,
            r.batch_id,
            r.status,
            f"{r.rows_read:,}",
            f"{r.rows_stored:,}",
            f"{r.rows_quarantined:,}",
            reasons,
        )
    out.print(table)


def quarantine(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name.")],
    limit: Annotated[int, typer.Option(help="Show at most this many rows.")] = 200,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Quarantined rows with their reasons, file and line."""
    from rich.table import Table

    from steadycast.ingestion.batch import quarantined
    from steadycast.workspace import Workspace

    ws = Workspace.open(workspace)
    rows = quarantined(ws, pipeline, limit=limit)
    if json_out:
        emit_json({"pipeline": pipeline, "rows": rows})
        return
    if not rows:
        out.print(f"No quarantined rows in {pipeline}.")
        return
    table = Table(title=f"quarantine of {pipeline} (newest batch first, at most {limit})")
    for col in ("file", "line", "reason", "detail", "raw"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["file"]), str(r["line"]), r["reason"], r["detail"] or "", r["raw"] or ""
        )
    out.print(table)
