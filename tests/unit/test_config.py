from __future__ import annotations

from pathlib import Path

import pytest

from steadycast.config import load_pipeline, parse_pipeline
from steadycast.errors import ConfigError
from tests.conftest import run_cli

MINIMAL = {
    "source": {"id_column": "id", "time_column": "t", "value_column": "v"},
    "series": {"frequency": "1h", "horizon": 24},
}


def test_minimal_pipeline_gets_defaults_for_every_other_table() -> None:
    cfg = parse_pipeline(MINIMAL, "meters", "pipelines/meters.toml")
    assert cfg.source.timezone == "UTC"
    assert cfg.series.season_length == 1
    assert cfg.backtest.windows >= 1
    assert cfg.models.levels == [80, 95]
    assert cfg.ingest.snap_to_frequency is False


def test_bad_frequency_names_file_key_and_what_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "meters.toml"
    path.write_text(
        '[source]\nid_column="a"\ntime_column="b"\nvalue_column="c"\n'
        '[series]\nfrequency="1 hour"\nhorizon=48\n'
    )
    with pytest.raises(
        ConfigError,
        match=r"pipelines/meters.toml: series.frequency: '1 hour' is not a frequency; "
        r"use a pandas offset alias such as 30min, 1h, 1D",
    ):
        load_pipeline(path, display="pipelines/meters.toml")


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"series": {"frequency": "1h"}}, r"series.horizon: required key is missing"),
        ({"series": {"frequency": "1h", "horizon": 0}}, r"series.horizon: 0: .*greater than 0"),
        (
            {"source": {**MINIMAL["source"], "timezone": "Mars/Olympus"}},
            r"source.timezone: 'Mars/Olympus' is not a time zone",
        ),
        ({"source": {**MINIMAL["source"], "id_colum": "x"}}, r"source.id_colum: unknown key"),
        (
            {"series": {"frequency": "1h", "horizon": 1, "min_value": 5, "max_value": 1}},
            r"min_value 5.0 is above max_value 1.0",
        ),
        ({"modles": {}}, r"modles: unknown key"),
        (
            {"series": {"frequency": "1h", "horizon": 1, "season_lengths": [24, 0]}},
            r"every season length must be",
        ),
    ],
)
def test_each_bad_key_is_named(patch: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_pipeline({**MINIMAL, **patch}, "meters", "pipelines/meters.toml")


def test_bad_toml_and_bad_name(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[source\n")
    with pytest.raises(ConfigError, match=r"broken.toml: not valid TOML"):
        load_pipeline(path)
    with pytest.raises(ConfigError, match=r"'../etc' is not a pipeline name"):
        parse_pipeline(MINIMAL, "../etc", "x")


def test_cli_exits_2_on_bad_config(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert run_cli("init", str(ws)).returncode == 0
    (ws / "pipelines" / "meters.toml").write_text(
        '[source]\nid_column="a"\ntime_column="b"\nvalue_column="c"\n'
        '[series]\nfrequency="1 hour"\nhorizon=48\n'
    )
    data = tmp_path / "x.csv"
    data.write_text("a,b,c\nm,2024-01-01 00:00,1\n")
    result = run_cli("ingest", "meters", str(data), "-w", str(ws))
    assert result.returncode == 2
    assert "pipelines/meters.toml: series.frequency: '1 hour' is not a frequency" in result.stderr
    assert "Traceback" not in result.stderr
