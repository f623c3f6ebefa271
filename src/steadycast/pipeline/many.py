"""Several pipelines run one after another (``steadycast run --all`` / ``--select``): which
ones, and what each came to, so one exit code can tell a scheduler how the whole went.

One pipeline's failure never stops the next: a scheduler that runs the whole workspace wants
every pipeline that can publish to publish, and the names of those that did not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from steadycast.errors import SteadycastError, UsageError
from steadycast.pipeline.scope import RunResult
from steadycast.workspace import Workspace

__all__ = ["Outcome", "exit_code", "result_exit_code", "run_each", "selected"]

#: Exit code of a run whose release is current (published, or skipped on it) while a sink
#: does not hold it: its incident is open and the next run delivers again (docs/sinks.md).
SINK_BEHIND = 4

#: Exit codes from least to most in need of a person: published or skipped, published but a
#: sink behind, held (the last good release is still served), failed, not runnable (a
#: configuration error).
SEVERITY = (0, SINK_BEHIND, 3, 1, 2)


@dataclass
class Outcome:
    """What one pipeline of the selection came to. ``result`` is ``None`` when the run could
    not start (its pipeline file does not load, another run holds its lock)."""

    pipeline: str
    exit_code: int
    wall_s: float
    result: RunResult | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        return self.result.status if self.result is not None else "failed"

    def as_dict(self) -> dict[str, Any]:
        """The pipeline's ``run --json`` object, with its exit code and wall time."""
        doc: dict[str, Any] = (
            self.result.as_dict()
            if self.result is not None
            else {"run_id": None, "pipeline": self.pipeline, "status": "failed"}
        )
        if self.error and "error" not in doc:
            doc["error"] = self.error
        doc["exit_code"] = self.exit_code
        doc["wall_s"] = round(self.wall_s, 3)
        return doc


def selected(ws: Workspace, names: list[str], every: bool) -> list[str]:
    """The pipelines to run, in order: every pipeline of the workspace, or the names given
    (each once). An unknown name is a usage error before anything runs."""
    known = ws.pipeline_names()
    listing = ", ".join(known) or "none yet; add pipelines/NAME.toml"
    if every:
        if names:
            raise UsageError(
                f"--all runs every pipeline; name none with it (got {', '.join(names)}), "
                "or use --select NAME... instead of --all"
            )
        if not known:
            raise UsageError(f"no pipelines in {ws.root}: add pipelines/NAME.toml first")
        return known
    if not names:
        raise UsageError(f"name the pipelines to run, or use --all; pipelines: {listing}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"no pipeline named {', '.join(repr(n) for n in unknown)} in {ws.root}; nothing "
            f"was run. Pipelines: {listing}"
        )
    return list(dict.fromkeys(names))


def run_each(names: list[str], run: Callable[[str], RunResult]) -> Iterator[Outcome]:
    """Run ``run(name)`` for each name, one after another, yielding each outcome as it ends."""
    for name in names:
        began = time.monotonic()
        try:
            result = run(name)
        except SteadycastError as exc:
            yield Outcome(name, exc.exit_code, time.monotonic() - began, error=str(exc))
            continue
        except Exception as exc:
            # A bug met by one pipeline must not stop the others; it is reported by name (a
            # run keeps the traceback in its record).
            problem = " ".join(f"internal error: {type(exc).__name__}: {exc}".split())
            yield Outcome(name, 1, time.monotonic() - began, error=problem)
            continue
        code = result_exit_code(result)
        yield Outcome(name, code, time.monotonic() - began, result=result, error=result.error)


def result_exit_code(result: RunResult) -> int:
    """A run's exit code: 0 published, 3 held, 1 failed; a skipped run's is its last decided
    run's (0 after a published run, 3 while the pipeline is still held on the same data).
    ``SINK_BEHIND`` (4) instead of 0 when the release is current but a sink does not hold it."""
    if result.status == "skipped":
        code = 3 if (result.skipped or {}).get("since_status") == "held" else 0
    else:
        code = {"published": 0, "held": 3}.get(result.status, 1)
    if code == 0 and any(s.get("state") == "pending" for s in result.sinks):
        return SINK_BEHIND
    return code


def exit_code(outcomes: list[Outcome]) -> int:
    """The worst exit code of the outcomes (``SEVERITY``); 0 when all published or skipped."""
    return max((o.exit_code for o in outcomes), key=_severity, default=0)


def _severity(code: int) -> int:
    """Where an exit code ranks in ``SEVERITY``; a code it does not list ranks worst."""
    return SEVERITY.index(code) if code in SEVERITY else len(SEVERITY)
