from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from steadycast.errors import UnknownPipelineError, WorkspaceError
from steadycast.storage import control, store
from steadycast.workspace import Workspace
from tests.conftest import run_cli


def test_init_creates_settings_pipelines_and_store(tmp_path: Path) -> None:
    result = run_cli("init", str(tmp_path / "ws"))
    assert result.returncode == 0, result.stderr
    ws = Workspace.open(tmp_path / "ws")
    assert ws.settings_file.exists()
    assert ws.pipeline_names() == ["example"]
    # The example pipeline is valid as shipped, so a user can copy it.
    assert ws.pipeline("example").series.frequency == "30min"
    with store.reading(ws.store_path) as con:
        row = con.execute("SELECT max(version) FROM schema_version").fetchone()
        assert row is not None and row[0] == store.SCHEMA_VERSION
    assert control.audit_entries(ws.control_path)[0]["action"] == "workspace.init"


def test_init_twice_keeps_user_files(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "example.toml").write_text("# mine\n")
    Workspace.init(tmp_path / "ws")
    assert (ws.pipelines_dir / "example.toml").read_text() == "# mine\n"


def test_workspace_from_flag_env_or_cwd(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    csv = tmp_path / "q.csv"
    assert run_cli("quarantine", "example", "-w", str(ws.root)).returncode == 0
    assert (
        run_cli("quarantine", "example", env={"STEADYCAST_WORKSPACE": str(ws.root)}).returncode == 0
    )
    assert run_cli("quarantine", "example", cwd=ws.root).returncode == 0
    elsewhere = run_cli("quarantine", "example", cwd=tmp_path)
    assert elsewhere.returncode == 2
    assert "not a steadycast workspace" in elsewhere.stderr
    assert not csv.exists()


def test_unknown_pipeline_is_a_usage_error(workspace: Workspace) -> None:
    with pytest.raises(UnknownPipelineError, match=r"no pipeline 'nope'.*known: example"):
        workspace.pipeline("nope")


def test_older_store_is_upgraded_with_its_data(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    ws = Workspace.init(root)
    ws.store_path.unlink()
    # A store as version 1 of steadycast left it, with a row in it.
    con = duckdb.connect(str(ws.store_path))
    store.migrate(con, target=1)
    con.execute("INSERT INTO observations VALUES ('p', 'a', '2024-01-01', 1.5, 'b1')")
    con.execute(
        "INSERT INTO batches VALUES ('p', 'b1', 'sha', 'f.csv', 'csv', '2024-01-02', 1, 1, 0, 1, 0, 0)"
    )
    con.close()
    with store.reading(ws.store_path) as con:
        assert con.execute("SELECT max(version) FROM schema_version").fetchone() == (
            store.SCHEMA_VERSION,
        )
        assert con.execute("SELECT y FROM observations").fetchall() == [(1.5,)]
        assert con.execute("SELECT count(*) FROM observation_history").fetchone() == (0,)
        # Rows still name their batch (by its number since version 6).
        assert con.execute(
            "SELECT o.y, b.batch_id FROM observations o JOIN batches b USING (pipeline, batch_no)"
        ).fetchall() == [(1.5, "b1")]


def test_newer_store_is_refused_not_broken(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    con = duckdb.connect(str(ws.store_path))
    con.execute("INSERT INTO schema_version VALUES (999)")
    con.close()
    with (
        pytest.raises(WorkspaceError, match="newer than this steadycast understands"),
        store.writing(ws.store_path),
    ):
        pass
    (ws.root / "steadycast.toml").write_text("[workspace]\nformat = 99\n")
    with pytest.raises(WorkspaceError, match="upgrade steadycast"):
        Workspace.open(ws.root)
