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


# A value of the wrong type or outside what the product can use is an error naming the file and
# the key, never coerced ("24" is not 24, true is not 1) and never left for ingest or a run to
# trip over later.
STRICT_CASES = [
    ({"frequency": "0h"}, r"series.frequency: '0h' is not a positive frequency"),
    ({"frequency": "-1h"}, r"series.frequency: '-1h' is not a positive frequency"),
    ({"horizon": "24"}, r"series.horizon: '24' is a string, but this key needs a whole number"),
    ({"horizon": True}, r"series.horizon: true is true/false, but this key needs a whole number"),
    ({"horizon": 24.5}, r"series.horizon: 24.5 is a number, but this key needs a whole number"),
    ({"season_lengths": ["24"]}, r"series.season_lengths.0: '24' is a string"),
    ({"min_value": float("nan")}, r"series.min_value: nan is not finite"),
    ({"max_value": "1e9"}, r"series.max_value: '1e9' is a string, but this key needs a number"),
]


@pytest.mark.parametrize(("series", "message"), STRICT_CASES)
def test_series_values_are_strict(series: dict, message: str) -> None:
    patch = {"series": {**MINIMAL["series"], **series}}
    with pytest.raises(ConfigError, match=r"pipelines/meters.toml: " + message):
        parse_pipeline({**MINIMAL, **patch}, "meters", "pipelines/meters.toml")


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"source": {**MINIMAL["source"], "id_column": " "}}, r"source.id_column: .*empty"),
        (
            {"source": {**MINIMAL["source"], "value_column": "id"}},
            r"source: id_column, time_column and value_column must be three different",
        ),
        (
            {"source": {**MINIMAL["source"], "time_format": "YYYY-MM-DD"}},
            r"source.time_format: 'YYYY-MM-DD' has no strftime directive",
        ),
        ({"ingest": {"delimiter": ";;"}}, r"ingest.delimiter: .*one character"),
        ({"ingest": {"memory_limit": "a lot"}}, r"ingest.memory_limit: 'a lot' is not a memory"),
        ({"ingest": {"snap_to_frequency": "yes"}}, r"ingest.snap_to_frequency: 'yes' is a str"),
        ({"models": {"candidates": []}}, r"models.candidates: name at least one model"),
        ({"models": {"candidates": "AutoETS"}}, r"models.candidates: 'AutoETS' is a string"),
        ({"backtest": {"windows": "2"}}, r"backtest.windows: '2' is a string"),
        ({"forecast": {"timeout_s": float("inf")}}, r"forecast.timeout_s: inf is not finite"),
        ({"forecast": {"workers": -1}}, r"forecast.workers: -1: .*greater than or equal to 0"),
        ({"engine": {"spark_master": ""}}, r"engine.spark_master: .*empty"),
        ({"gate": {"total_jump": {"limit": -1}}}, r"gate.total_jump.limit: -1: .*greater"),
        ({"gate": {"negative": {"blocking": 1}}}, r"gate.negative.blocking: 1 is a whole num"),
        ({"checks": {"spikes": {"max_z": "3"}}}, r"checks.spikes.max_z: '3' is a string"),
        ({"alerts": {"retries": "3"}}, r"alerts.retries: '3' is a string"),
        ({"series": 48}, r"series: 48 is a whole number, but this key needs a table"),
    ],
)
def test_every_table_refuses_plausible_mistakes(patch: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=r"pipelines/meters.toml: " + message):
        parse_pipeline({**MINIMAL, **patch}, "meters", "pipelines/meters.toml")


def test_a_webhook_url_put_where_its_variable_name_belongs_is_not_quoted() -> None:
    url = "https://hooks.example.com/services/T0/SECRET-PART"
    with pytest.raises(ConfigError, match=r"alerts.webhook_url_env: must be the name") as err:
        parse_pipeline({**MINIMAL, "alerts": {"webhook_url_env": url}}, "m", "pipelines/m.toml")
    assert "SECRET-PART" not in str(err.value)


def test_natural_toml_types_still_load(tmp_path: Path) -> None:
    path = tmp_path / "meters.toml"
    path.write_text(
        '[source]\nid_column="a"\ntime_column="b"\nvalue_column="c"\ntime_format="%Y-%m-%d"\n'
        '[series]\nfrequency="30min"\nhorizon=48\nseason_lengths=[48, 336]\nmin_value=0\n'
        "max_value=1e9\n[forecast]\ntimeout_s=60\n[ingest]\ndelimiter=';'\n"
        'memory_limit="512MB"\n[alerts]\nwebhook_url_env="HOOK"\n'
    )
    cfg = load_pipeline(path)
    assert (cfg.series.horizon, cfg.series.min_value, cfg.forecast.timeout_s) == (48, 0.0, 60.0)


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ('frequency = "0h"\nhorizon = 24', "series.frequency: '0h' is not a positive frequency"),
        ('frequency = "1h"\nhorizon = "24"', "series.horizon: '24' is a string"),
    ],
)
def test_ingest_and_run_exit_2_naming_the_file_and_key(
    tmp_path: Path, series: str, message: str
) -> None:
    ws = tmp_path / "ws"
    assert run_cli("init", str(ws)).returncode == 0
    (ws / "pipelines" / "meters.toml").write_text(
        f'[source]\nid_column="a"\ntime_column="b"\nvalue_column="c"\n[series]\n{series}\n'
    )
    data = tmp_path / "x.csv"
    data.write_text("a,b,c\nm,2024-01-01 00:00,1\nm,2024-01-01 01:00,2\n")
    for args in (("ingest", "meters", str(data)), ("run", "meters")):
        result = run_cli(*args, "-w", str(ws))
        assert result.returncode == 2, (args, result.stderr)
        assert f"pipelines/meters.toml: {message}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ['"1"', "true", "0", "[1]"])
def test_workspace_format_of_the_wrong_type_is_named(tmp_path: Path, value: str) -> None:
    from steadycast.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    ws.settings_file.write_text(f"[workspace]\nformat = {value}\n")
    with pytest.raises(ConfigError, match=r"steadycast.toml: \[workspace\] format must be a whole"):
        Workspace.open(ws.root)


@pytest.mark.parametrize(
    ("sinks", "message"),
    [
        (
            [{"kind": "parquet", "path": "s3://b/f"}, {"kind": "parquet", "path": "s3://b/f/"}],
            r"sinks: two \[\[sinks\]\] tables write to path 's3://b/f/'; keep one",
        ),
        (
            [
                {"kind": "postgresql", "database": "postgresql://a@db:5432/x", "table": "t"},
                {"kind": "postgresql", "database": "postgresql://b@db:5432/x", "table": "t"},
            ],
            r"two \[\[sinks\]\] tables write to table 't' of 'db:5432/x'",
        ),
    ],
)
def test_a_sink_named_twice_is_refused(sinks: list[dict], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_pipeline({**MINIMAL, "sinks": sinks}, "meters", "pipelines/meters.toml")


def test_two_tables_in_one_database_are_two_sinks() -> None:
    db = "postgresql://a@db:5432/x"
    sinks = [
        {"kind": "postgresql", "database": db, "table": "t"},
        {"kind": "postgresql", "database": db, "table": "u"},
    ]
    cfg = parse_pipeline({**MINIMAL, "sinks": sinks}, "meters", "pipelines/meters.toml")
    assert [s.table for s in cfg.sinks] == ["t", "u"]
