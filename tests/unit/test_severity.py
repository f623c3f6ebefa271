"""One severity for checks, gate rules and incidents: stored as the same strings as ever, ordered
info < warning < error in one place, and the type every one of them carries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steadycast.config import GateConfig, parse_pipeline
from steadycast.errors import ConfigError
from steadycast.ops import incidents
from steadycast.ops.incidents import check_findings, gate_findings, raise_incident
from steadycast.quality import Severity, checks
from steadycast.quality.gate import evaluate_gate
from steadycast.quality.severity import at_least, rank

START = pd.Timestamp("2024-01-01")


def pipeline(extra: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
    return parse_pipeline(
        {"source": {}, "series": {"frequency": "1h", "horizon": 24}, **(extra or {})},
        "meters",
        "pipelines/meters.toml",
    )


def test_values_are_the_stored_strings() -> None:
    assert [s.value for s in Severity] == ["info", "warning", "error"]
    assert Severity.ERROR == "error" and isinstance(Severity.ERROR, str)
    assert json.dumps({"severity": Severity.WARNING}) == '{"severity": "warning"}'
    assert f"{Severity.INFO}" == "info" and str(Severity.INFO) == "info"


def test_order_is_by_rank_not_by_spelling() -> None:
    # Alphabetically "error" < "info" < "warning": the enum must not sort that way.
    assert max(Severity) is Severity.ERROR
    assert Severity.INFO < Severity.WARNING < Severity.ERROR
    assert Severity.ERROR > "warning" and Severity.ERROR > "warning"
    assert sorted(["error", "info", "warning"], key=rank) == ["info", "warning", "error"]
    assert [s.rank for s in Severity] == [0, 1, 2]
    assert rank("fatal") == 0 and rank("fatal", unknown=2) == 2
    assert at_least("error", "warning") and at_least("warning", "warning")
    assert not at_least("info", "warning")


def test_an_unknown_severity_names_itself_and_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"incident severity 'fatal' is not one of info, warning, error"
    ):
        Severity.parse("fatal", "incident severity")
    with pytest.raises(ValueError, match=r"severity 2 is not one of"):
        Severity.parse(2)  # type: ignore[arg-type]
    assert Severity.parse("warning") is Severity.WARNING


def test_a_pipeline_file_gives_the_enum_and_names_a_bad_value_as_before() -> None:
    cfg = pipeline({"checks": {"flat_line": {"severity": "error"}}, "alerts": {}})
    assert cfg.checks.flat_line.severity is Severity.ERROR
    assert cfg.checks.spikes.severity is Severity.INFO  # a default
    assert cfg.alerts.min_severity is Severity.WARNING
    # The stored configuration (its JSON, hashed per run) keeps the plain strings.
    assert '"severity":"error"' in cfg.model_dump_json()
    with pytest.raises(
        ConfigError,
        match=r"pipelines/meters.toml: checks.flat_line.severity: 'fatal': "
        r"Input should be 'info', 'warning' or 'error'",
    ):
        pipeline({"checks": {"flat_line": {"severity": "fatal"}}})
    with pytest.raises(ConfigError, match=r"alerts.min_severity: 2: Input should be 'info'"):
        pipeline({"alerts": {"min_severity": 2}})


def test_checks_gate_rules_and_findings_carry_the_enum_and_store_strings() -> None:
    t = np.arange(24 * 21)
    frame = pd.DataFrame(
        {
            "unique_id": "m1",
            "ds": START + pd.to_timedelta(t, unit="h"),
            "y": np.where(t > 24 * 14, 3.0, 10 + np.sin(2 * np.pi * t / 24)),  # stuck at 3
        }
    )
    cfg = pipeline({"checks": {"flat_line": {"severity": "error"}}})
    ctx = checks.CheckContext.from_config(cfg, now=frame["ds"].max())
    results, _ = checks.run_checks(frame, checks.build_specs(cfg), ctx)
    assert all(isinstance(r.severity, Severity) for r in results)
    stuck = [r for r in results if r.check == "flat_line" and not r.passed]
    assert stuck and stuck[0].severity is Severity.ERROR
    stored = checks.results_frame(results, run_id="r1")
    assert {type(v) for v in stored["severity"]} == {str}

    fc = pd.DataFrame({"unique_id": ["m1"], "ds": [START], "yhat": [np.nan], "model": ["X"]})
    prov = pd.DataFrame({"unique_id": ["m1"], "model": ["X"], "source": ["selected"]})
    decision = evaluate_gate(GateConfig(), fc, prov, results)
    assert all(isinstance(r.severity, Severity) for r in decision.results)
    assert {type(r.record()["severity"]) for r in decision.results} == {str}

    findings = check_findings("meters", results) + gate_findings("meters", decision)
    assert findings and all(isinstance(f.severity, Severity) for f in findings)
    assert [f.severity for f in findings if f.kind == "check"] == [Severity.ERROR]


def test_an_incident_keeps_its_worst_severity_by_rank(tmp_path: Path) -> None:
    path = tmp_path / "control.sqlite"

    def sight(severity: str, run_id: str) -> incidents.Incident:
        found, _ = raise_incident(
            path, "check:flat_line:meters:m1", "meters", "check", severity, "stuck", "", run_id
        )
        return found

    assert sight("error", "r1").severity == "error"
    # "warning" sorts after "error" as text; an error seen again as a warning stays an error.
    again = sight(Severity.WARNING, "r2")
    assert again.severity == "error" and type(again.severity) is str
    with pytest.raises(ValueError, match="incident severity 'fatal' is not one of"):
        sight("fatal", "r3")


def test_the_package_exports_and_the_dead_names_are_gone() -> None:
    for name in checks.__all__:
        assert getattr(checks, name) is not None, name
    for gone in ("severity_at_least", "RUN_LEVEL_CHECKS"):
        assert not hasattr(checks, gone), gone
    for gone in ("Kind", "LIVE", "_RANK"):
        assert not hasattr(incidents, gone), gone
    assert checks.Severity is Severity


@pytest.mark.parametrize(
    "first", ["steadycast.config", "steadycast.ops.incidents", "steadycast.quality.gate"]
)
def test_any_module_imports_first_without_a_cycle(first: str) -> None:
    """The configuration validates severities from ``quality`` while the checks read the
    configuration: whichever a program imports first must load."""
    code = f"import {first}; from steadycast.quality import Severity, checks; print(Severity.ERROR)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "error"
