"""Publishing and holding have one implementation, shared by a run and by an approval: the
release is written and made current, the run's record says so, and the audit log names the
release, the run and the content hash; a hold keeps the forecasts and leaves the current
release alone."""

from __future__ import annotations

import pandas as pd
import pytest

from steadycast.errors import NotFoundError
from steadycast.pipeline.publish import Audit, Outputs, hold, publish, read_held
from steadycast.storage import control, releases, runlog
from steadycast.workspace import Workspace


def outputs() -> Outputs:
    ds = pd.date_range("2024-01-01", periods=2, freq="h")
    export = pd.DataFrame({"unique_id": "a", "ds": ds, "yhat": [1.0, 2.0], "model": "Naive"})
    provenance = pd.DataFrame({"unique_id": ["a"], "model": ["Naive"], "source": ["chosen"]})
    return Outputs(export, provenance, {"levels": [], "frequency": "1h", "horizon": 2})


def started(ws: Workspace, run_id: str) -> str:
    runlog.start_run(ws.control_path, run_id, "meters", "local", "sha")
    return run_id


def last_audit(ws: Workspace) -> dict[str, object]:
    return control.audit_entries(ws.control_path, "meters", limit=1)[0]


def test_a_run_publishes_current_release_record_and_audit(workspace: Workspace) -> None:
    run_id = started(workspace, "meters-1")
    entry = Audit("release.published", detail={"series": 1, "fallback_series": 0})
    release = publish(workspace, "meters", run_id, outputs(), entry, series=1, fallback_series=0)
    assert releases.current_id(workspace.releases_dir, "meters") == release.release_id
    run = runlog.get_run(workspace.control_path, run_id)
    assert run is not None
    assert (run["status"], run["release_id"], run["series"]) == ("published", release.release_id, 1)
    audited = last_audit(workspace)
    assert (audited["action"], audited["subject"]) == ("release.published", release.release_id)
    assert audited["detail"] == {
        "run_id": run_id,
        "series": 1,
        "fallback_series": 0,
        "content_sha256": release.manifest["content_sha256"],
    }


def test_an_approval_publishes_the_same_way_and_audits_the_run_with_its_actor(
    workspace: Workspace,
) -> None:
    run_id = started(workspace, "meters-2")
    entry = Audit("run.approved", on_run=True, actor="alice", reason="checked by hand")
    release = publish(workspace, "meters", run_id, outputs(), entry)
    assert releases.current_id(workspace.releases_dir, "meters") == release.release_id
    audited = last_audit(workspace)
    assert (audited["action"], audited["subject"], audited["actor"]) == (
        "run.approved",
        run_id,
        "alice",
    )
    assert audited["reason"] == "checked by hand"
    assert audited["detail"] == {
        "release_id": release.release_id,
        "content_sha256": release.manifest["content_sha256"],
    }


def test_a_hold_keeps_the_forecasts_and_the_current_release(workspace: Workspace) -> None:
    first = started(workspace, "meters-3")
    kept = publish(workspace, "meters", first, outputs(), Audit("release.published"))
    run_id = started(workspace, "meters-4")
    held = outputs()
    hold(workspace, "meters", run_id, held, "gate: too many fallbacks", series=1)
    assert releases.current_id(workspace.releases_dir, "meters") == kept.release_id
    run = runlog.get_run(workspace.control_path, run_id)
    assert run is not None
    assert (run["status"], run["error"]) == ("held", "gate: too many fallbacks")
    audited = last_audit(workspace)
    assert (audited["action"], audited["subject"]) == ("run.held", run_id)
    back = read_held(workspace, run_id)
    pd.testing.assert_frame_equal(back.export, held.export, check_freq=False)
    assert back.meta == held.meta


def test_a_held_run_whose_forecasts_are_gone_is_named(workspace: Workspace) -> None:
    with pytest.raises(NotFoundError, match=r"the forecasts of held run meters-9 are gone"):
        read_held(workspace, "meters-9")
