"""A run named the way a person on call names it: its id, ``latest`` (the newest run of any
pipeline) or a pipeline's name (that pipeline's newest run), so ``steadycast report latest``
works without first looking up an id."""

from __future__ import annotations

from steadycast.errors import NotFoundError
from steadycast.ops import advice
from steadycast.storage.control import connect
from steadycast.workspace import Workspace

LATEST = "latest"


def newest_run_id(ws: Workspace, pipeline: str | None = None) -> str | None:
    """The id of the newest run (of ``pipeline``, or of any), or None when there is none."""
    sql = "SELECT run_id FROM runs"
    params: tuple[str, ...] = ()
    if pipeline is not None:
        sql += " WHERE pipeline = ?"
        params = (pipeline,)
    with connect(ws.control_path) as con:
        row = con.execute(sql + " ORDER BY started_at DESC, run_id DESC LIMIT 1", params).fetchone()
    return None if row is None else str(row[0])


def resolve_run(ws: Workspace, ref: str) -> str:
    """The run id ``ref`` names: a run id as it is, ``latest``, or a pipeline's newest run."""
    with connect(ws.control_path) as con:
        known = con.execute("SELECT 1 FROM runs WHERE run_id = ?", (ref,)).fetchone()
    if known is not None:
        return ref
    if ref == LATEST:
        newest = newest_run_id(ws)
        if newest is None:
            raise NotFoundError(f"no runs yet in {ws.root}; run a pipeline first")
        return newest
    if ref in ws.pipeline_names():
        newest = newest_run_id(ws, ref)
        if newest is None:
            raise NotFoundError(
                f"pipeline {ref!r} has not run yet; run `{advice.command(ws.root, 'run', ref)}`"
            )
        return newest
    raise NotFoundError(
        f"no run or pipeline {ref[:80]!r} in {ws.root}; name a run id from "
        f"`{advice.command(ws.root, 'runs')}`, a pipeline, or 'latest'"
    )
