"""concurrent-runs: two ``steadycast run``s of the same pipeline started together.

The promise: one runs and publishes; the other is refused at once, exit code 1, with one line
that says another run of the pipeline is in progress, since when, and which run it is; exactly
one release comes out, and the refused run leaves no record of a run behind.

Whether the two really overlapped is read from the record of the winner (its start and end):
a trial where one process only started after the other had finished is not a concurrent trial
and is tried again (a bounded number of times).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from steadycast.ingestion.batch import ingest
from steadycast.storage import releases
from steadycast.storage.control import connect
from steadycast.workspace import Workspace
from tests.integration.test_run import PIPELINE, fleet_csv
from tests.reliability.conftest import Record, size

TRIALS = size(1, 5, env="STEADYCAST_CONCURRENT_TRIALS")
MAX_TRIES = 3  # per trial, when the two runs did not overlap

REFUSAL = re.compile(
    r"^error: another run of pipeline 'meters' is in progress since "
    r"(?P<since>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z) \(run (?P<run>meters-[^,]+), pid \d+ on [^)]+\); "
    r"wait for it to finish"
)


def run_cmd(ws: Workspace) -> list[str]:
    # Forced: a run that began after the other had published would be skipped (same data).
    args = ["run", "meters", "--force", "-w", str(ws.root), "--json"]
    return [sys.executable, "-m", "steadycast.cli", *args]


def one_trial(root: Path, data: Path) -> tuple[list[str], bool, dict[str, object]]:
    """Start two runs together; returns (violations, whether they overlapped, what happened)."""
    ws = Workspace.init(root)
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE)
    ingest(ws, "meters", [data])
    procs = [
        subprocess.Popen(run_cmd(ws), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    outcomes = [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]
    codes = sorted(code for code, _, _ in outcomes)
    with connect(ws.control_path) as con:
        runs = [dict(r) for r in con.execute("SELECT * FROM runs ORDER BY started_at")]
        locks = con.execute("SELECT count(*) FROM locks").fetchone()[0]
    published = releases.list_releases(ws.releases_dir, "meters")
    seen: dict[str, object] = {"exit_codes": codes, "runs": len(runs), "releases": len(published)}
    problems: list[str] = []
    if codes == [0, 0]:
        # Both published: fine only if one began after the other had finished.
        first, second = runs[0], runs[1]
        overlapped = second["started_at"] < (first["finished_at"] or "9")
        if overlapped:
            problems.append("both runs ran at the same time and published")
        return problems, overlapped, seen
    if codes != [0, 1]:
        problems.append(f"exit codes {codes}: {[err[-300:] for _, _, err in outcomes]}")
        return problems, True, seen
    winner = next(out for code, out, _ in outcomes if code == 0)
    refused = next(err for code, _, err in outcomes if code == 1)
    seen["message"] = refused.strip()
    result = json.loads(winner)
    match = REFUSAL.match(refused.strip())
    if "Traceback" in refused or len(refused.strip().splitlines()) != 1 or match is None:
        problems.append(f"unclear refusal: {refused[-400:]!r}")
    elif match["run"] != result["run_id"]:
        problems.append(f"the refusal names run {match['run']}, the run was {result['run_id']}")
    if result["status"] != "published":
        problems.append(f"the winner did not publish: {result.get('error')}")
    if len(runs) != 1:
        problems.append(f"{len(runs)} runs recorded, expected the winner's only")
    if (
        len(published) != 1
        or releases.current_id(ws.releases_dir, "meters") != result["release_id"]
    ):
        problems.append(
            f"{len(published)} releases; current {releases.current_id(ws.releases_dir, 'meters')}"
        )
    if locks:
        problems.append("a pipeline lock is left behind")
    return problems, True, seen


def test_two_runs_started_together_one_runs_one_is_refused(tmp_path: Path, figure: Record) -> None:
    data = fleet_csv(tmp_path / "fleet.csv", series=4)
    violations: list[str] = []
    trials: list[dict[str, object]] = []
    concurrent = 0
    for trial in range(TRIALS):
        for attempt in range(MAX_TRIES):
            problems, overlapped, seen = one_trial(tmp_path / f"t{trial}-{attempt}", data)
            trials.append(seen)
            if overlapped:
                concurrent += 1
                violations += [f"trial {trial}: {p}" for p in problems]
                break
    figure(
        "concurrent-runs",
        violations=len(violations) + (TRIALS - concurrent),
        value=(
            f"{len(violations)} violations in {concurrent} concurrent pairs; the second run is "
            "refused with \"another run of pipeline 'meters' is in progress since ...\""
        ),
        trials=trials,
        violations_found=violations[:5],
    )
    assert concurrent == TRIALS, f"only {concurrent} of {TRIALS} trials overlapped: {trials}"
    assert not violations, violations
