"""The registry: built-ins plus entry points; broken plugins warn, never crash, never shadow."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from steadycast.errors import ConfigError
from steadycast.models.base import Capabilities
from steadycast.models.registry import (
    SteadycastPluginWarning,
    available_models,
    builtin_models,
    contract_problem,
    create_model,
    describe_models,
    plugin_failures,
    reload_plugins,
)
from steadycast.models.statistical import SES, SeasonalNaive

CHAOS = "steadycast-chaos-models"


def warned(caught: pytest.WarningsRecorder, pattern: str) -> bool:
    return any(re.search(pattern, str(w.message)) for w in caught)


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    """Forget what was loaded, so the test sees plugins load (and warn) again."""
    reload_plugins()
    yield
    reload_plugins()
    with pytest.warns(SteadycastPluginWarning):
        available_models()


def test_builtins_and_installed_plugins_are_available() -> None:
    models = available_models()
    assert set(builtin_models()) <= set(models)
    assert {"ChaosOracle", "ChaosHang", "SeasonalMedian"} <= set(models)


def test_plugins_can_be_switched_off_entirely_or_one_by_one() -> None:
    assert set(available_models(plugins=False)) == set(builtin_models())
    assert "ChaosOracle" not in available_models(disabled=["ChaosOracle"])
    by_package = available_models(disabled=[CHAOS])
    assert "ChaosHang" not in by_package and "SeasonalMedian" in by_package


def test_a_plugin_that_fails_to_import_is_a_warning_and_a_recorded_failure(
    fresh_registry: None,
) -> None:
    with pytest.warns(SteadycastPluginWarning) as caught:
        models = available_models()
    assert warned(
        caught,
        r"model plugin 'ChaosBrokenImport' \(from steadycast-chaos-models 0.1.0\) skipped: "
        r"failed to import: ImportError: steadycast_chaos_models.broken needs a library",
    )
    assert "ChaosBrokenImport" not in models
    (failure,) = [f for f in plugin_failures() if f.name == "ChaosBrokenImport"]
    assert failure.entry_point == "steadycast_chaos_models.broken:ChaosBrokenImport"
    assert failure.distribution == f"{CHAOS} 0.1.0"
    assert "ImportError" in failure.error


def test_a_disabled_plugin_is_not_even_imported(fresh_registry: None) -> None:
    available_models(disabled=["ChaosBrokenImport", "SeasonalNaive"])  # no warning: not loaded
    assert plugin_failures() == []


def test_a_plugin_cannot_shadow_a_builtin(fresh_registry: None) -> None:
    with pytest.warns(SteadycastPluginWarning) as caught:
        models = available_models()
    assert warned(
        caught, r"'SeasonalNaive' .* its name is already taken by a built-in model; rename it"
    )
    assert models["SeasonalNaive"] is SeasonalNaive
    assert isinstance(create_model("SeasonalNaive"), SeasonalNaive)
    assert any(f.name == "SeasonalNaive" for f in plugin_failures())


def test_unknown_model_is_a_config_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'AutoEST'; known models: .*AutoETS"):
        create_model("AutoEST")


def test_naming_a_broken_plugin_says_why_it_is_unavailable() -> None:
    with pytest.raises(
        ConfigError, match=r"'ChaosBrokenImport' could not be loaded: .*ImportError"
    ):
        create_model("ChaosBrokenImport")


def test_a_plugin_constructor_rejecting_parameters_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'SeasonalMedian' does not accept these parameters"):
        create_model("SeasonalMedian", {"window": 3})


def test_the_long_name_of_ses_is_accepted() -> None:
    assert isinstance(create_model("SimpleExponentialSmoothing"), SES)


def test_describe_models_lists_source_and_capabilities() -> None:
    rows = {row["name"]: row for row in describe_models()}
    assert rows["AutoETS"] == {
        "name": "AutoETS",
        "source": "builtin",
        "distribution": None,
        "intervals": True,
        "min_history": 7,
        "handles_zeros": True,
        "intermittent": False,
        "global": False,
        "tier": "full",
    }
    assert rows["LightGBM"]["global"] is True
    assert rows["CrostonOptimized"]["intermittent"] is True
    assert rows["SeasonalMedian"]["source"] == "plugin"
    assert rows["SeasonalMedian"]["distribution"] == "steadycast-model-template 0.1.0"
    assert "ChaosBrokenImport" not in rows


class _NoCapabilities:
    name = "X"

    def forecast(self) -> None: ...


class _BadTier:
    name = "X"
    capabilities = Capabilities(cost="cheap")

    def forecast(self) -> None: ...


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        (SeasonalNaive(), "is a SeasonalNaive, not a class"),
        (
            _NoCapabilities,
            "has no class attribute 'capabilities' (a steadycast.models.base.Capabilities)",
        ),
        (_BadTier, "declares capabilities.cost 'cheap'; use 'fast' or 'full'"),
        (int, "has no class attribute 'name' (a non-empty string)"),
    ],
)
def test_contract_problems_are_named(obj: object, problem: str) -> None:
    assert contract_problem(obj) == problem


def test_every_builtin_satisfies_the_contract() -> None:
    assert {name: contract_problem(cls) for name, cls in builtin_models().items()} == dict.fromkeys(
        builtin_models()
    )
