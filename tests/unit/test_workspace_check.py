"""The workspace's configuration: the workspace-wide ``[alerts]`` default, ``validate``, and the
``config`` incident a file that does not load opens (and the next clean load resolves)."""

from __future__ import annotations

from pathlib import Path

import pytest

from steadycast.errors import ConfigError
from steadycast.ops.incidents import list_incidents, resolve
from steadycast.pipeline.status import pipeline_summaries, workspace_status
from steadycast.workspace import Workspace
from steadycast.workspace_check import WORKSPACE_SCOPE, validate_workspace
from tests.pipelines import pipeline_toml

HOOK = "http://127.0.0.1:9/hooks/workspace"
OWN_HOOK = "http://127.0.0.1:9/hooks/own"


def _settings(ws: Workspace, extra: str) -> None:
    with ws.settings_file.open("a", encoding="utf-8") as fh:
        fh.write("\n" + extra)


def _write(ws: Workspace, name: str, text: str) -> Path:
    path = ws.pipelines_dir / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "example.toml").unlink()
    return ws


def test_the_workspace_alerts_are_every_pipelines_default_and_a_pipeline_overrides_them(
    ws: Workspace,
) -> None:
    _settings(ws, f'[alerts]\nwebhook_url = "{HOOK}"\nretries = 0\n')
    _write(ws, "plain", pipeline_toml())
    _write(ws, "own", pipeline_toml(extra=f'[alerts]\nwebhook_url = "{OWN_HOOK}"\n'))

    plain = ws.pipeline("plain")
    assert plain.alerts.webhook_url == [HOOK] and plain.alerts.retries == 0
    own = ws.pipeline("own")
    assert own.alerts.webhook_url == [OWN_HOOK] and own.alerts.retries == 3


def test_a_bad_workspace_alerts_table_names_the_file_and_the_key(ws: Workspace) -> None:
    _settings(ws, '[alerts]\nretries = "2"\n')
    _write(ws, "plain", pipeline_toml())
    with pytest.raises(ConfigError, match=r"steadycast\.toml: alerts\.retries: '2' is a string"):
        ws.pipeline("plain")
    (incident,) = list_incidents(ws.control_path, pipeline=WORKSPACE_SCOPE)
    assert incident.fingerprint == "config:steadycast.toml" and incident.state == "open"


def test_a_broken_file_opens_one_incident_and_loading_it_again_resolves_it(
    ws: Workspace,
) -> None:
    path = _write(ws, "meters", pipeline_toml().replace("horizon = 12", 'horizon = "12"'))
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"pipelines/meters\.toml: series\.horizon"):
            ws.pipeline("meters")
    (incident,) = list_incidents(ws.control_path, pipeline="meters")
    assert (incident.kind, incident.fingerprint) == ("config", "config:pipelines/meters.toml")
    assert incident.state == "open" and incident.occurrences == 2
    assert "series.horizon" in (incident.detail or "")

    path.write_text(pipeline_toml(), encoding="utf-8")
    ws.pipeline("meters")
    (incident,) = list_incidents(ws.control_path, pipeline="meters")
    assert incident.state == "resolved"
    assert incident.resolution == "cause gone: pipelines/meters.toml loads again"


def test_status_and_the_pipeline_list_show_a_broken_pipeline_as_broken(ws: Workspace) -> None:
    _write(ws, "good", pipeline_toml())
    _write(ws, "typo", pipeline_toml(extra="[modles]\n"))

    doc = workspace_status(ws)
    by_name = {p["pipeline"]: p for p in doc["pipelines"]}
    assert by_name["good"]["broken"] is False and by_name["good"]["config_error"] is None
    assert by_name["typo"]["broken"] is True
    assert "pipelines/typo.toml: modles: unknown key" in by_name["typo"]["config_error"]
    assert by_name["typo"]["open_incidents"] == 1

    # Asked for by name, a broken pipeline is shown too (not refused).
    (only,) = workspace_status(ws, "typo")["pipelines"]
    assert only["broken"] is True

    # The list counts the incident that loading the file opened (the server's first look).
    (incident,) = list_incidents(ws.control_path, pipeline="typo")
    resolve(ws.control_path, incident.id)
    summaries = {s["name"]: s for s in pipeline_summaries(ws)}
    assert summaries["typo"]["open_incidents"] == 1
    assert summaries["typo"]["broken"] is True and "modles" in summaries["typo"]["config_error"]
    assert summaries["good"]["broken"] is False


def test_validate_names_each_problem_with_its_file_and_key(ws: Workspace) -> None:
    _settings(ws, '[alert]\nwebhook_url = "x"\n[workspace.extra]\n')
    _write(ws, "good", pipeline_toml())
    _write(ws, "typo", pipeline_toml(extra="[models]\ncandidates = ['SeasonalNaive', 'AutoETZ']\n"))
    _write(ws, "types", pipeline_toml().replace("horizon = 12", 'horizon = "12"'))
    (ws.pipelines_dir / "my meters.toml").write_text(pipeline_toml(), encoding="utf-8")

    problems = [(p.file, p.error) for p in validate_workspace(ws)]
    files = [f for f, _ in problems]
    assert "pipelines/good.toml" not in files
    assert ("steadycast.toml", "[alert]: unknown table (known: alerts, server, workspace)") in (
        problems
    )
    assert any(f == "steadycast.toml" and e.startswith("workspace.extra:") for f, e in problems)
    assert any(
        f == "pipelines/typo.toml" and e.startswith("models.candidates: model 'AutoETZ'")
        for f, e in problems
    ), problems
    assert any(
        f == "pipelines/types.toml" and e.startswith("series.horizon: '12' is a string")
        for f, e in problems
    ), problems
    assert any(f == "pipelines/my meters.toml" and "not a pipeline name" in e for f, e in problems)


def test_validate_reports_a_broken_workspace_alerts_table_once(ws: Workspace) -> None:
    _settings(ws, '[alerts]\nwebhok_url = "x"\n')
    _write(ws, "a", pipeline_toml())
    _write(ws, "b", pipeline_toml())
    problems = [str(p) for p in validate_workspace(ws)]
    assert problems == [
        "steadycast.toml: alerts.webhok_url: unknown key (check its spelling and the table it "
        "is in)"
    ]


def test_a_clean_workspace_validates(ws: Workspace) -> None:
    _settings(ws, f'[alerts]\nwebhook_url = "{HOOK}"\n')
    _write(ws, "good", pipeline_toml())
    assert validate_workspace(ws) == []
