"""Find models by name: the built-ins plus classes registered under ``steadycast.models``.

A data scientist ships a model as a package whose ``pyproject.toml`` has::

    [project.entry-points."steadycast.models"]
    MedianOfSeasons = "my_package.models:MedianOfSeasons"

The entry point's name must equal the class's ``name``. Loading rules, and why:

- **A broken plugin never crashes the platform.** A plugin whose module fails to import, whose
  object is not a class, or that does not satisfy the contract (``name``, ``capabilities``,
  ``forecast``) is skipped with a ``SteadycastPluginWarning`` and recorded in
  ``plugin_failures()``, so ``steadycast models`` can show it and the run goes on without it.
- **A plugin cannot shadow a built-in.** A plugin that registers a built-in's name is refused
  (warning + recorded failure) and the built-in stays: a pipeline that names ``AutoETS`` must not
  silently start running third-party code. Two plugins with one name: the first distribution in
  alphabetical order wins and the other is refused the same way.
- **Disabled plugins are not imported at all** (``disabled`` matches the model name, the entry
  point name or the distribution name), so a plugin that crashes at import can be switched off
  from the pipeline file: the one obvious lever.

Each entry point is loaded once per process (plugins do not change under a running process);
``reload_plugins()`` forgets what was loaded, for tests and long-lived servers.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from steadycast.errors import ConfigError
from steadycast.models.base import Capabilities, ForecastModel
from steadycast.models.card import Card
from steadycast.models.exogenous import EXOGENOUS_MODELS
from steadycast.models.fast import FAST_MODELS
from steadycast.models.ml import LightGBM
from steadycast.models.statistical import STATISTICAL_MODELS

ENTRY_POINT_GROUP = "steadycast.models"

#: Other spellings accepted in pipeline files.
ALIASES: Mapping[str, str] = {"SimpleExponentialSmoothing": "SES"}


class SteadycastPluginWarning(UserWarning):
    """A plugin was skipped; the message names it, its package and what is wrong."""


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used."""

    name: str  # entry point name
    entry_point: str  # "module:attr"
    distribution: str  # "package-name 1.2.3", or "" when unknown
    error: str  # what went wrong, for humans


def builtin_models() -> dict[str, type]:
    """The built-in models by name."""
    classes: list[type] = [*STATISTICAL_MODELS, *FAST_MODELS, Card, LightGBM, *EXOGENOUS_MODELS]
    return {cls.name: cls for cls in classes}  # type: ignore[attr-defined]


def contract_problem(obj: object) -> str | None:
    """Why ``obj`` is not a usable model class, or None if it is."""
    if not inspect.isclass(obj):
        return f"is a {type(obj).__name__}, not a class"
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        return "has no class attribute 'name' (a non-empty string)"
    caps = getattr(obj, "capabilities", None)
    if not isinstance(caps, Capabilities):
        return "has no class attribute 'capabilities' (a steadycast.models.base.Capabilities)"
    if not callable(getattr(obj, "forecast", None)):
        return "has no method forecast(history, task)"
    if not isinstance(caps.min_history, int) or caps.min_history < 1:
        return "declares capabilities.min_history below 1"
    if caps.cost not in ("fast", "full"):
        return f"declares capabilities.cost {caps.cost!r}; use 'fast' or 'full'"
    return None


def _distribution(ep: importlib.metadata.EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.metadata['Name']} {dist.version}" if dist is not None else ""


@functools.cache
def _entry_points() -> list[importlib.metadata.EntryPoint]:
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return sorted(found, key=lambda ep: (_distribution(ep).lower(), ep.name))


@functools.cache
def _load(name: str, value: str, distribution: str) -> type | PluginFailure:
    """Import one entry point; a failure is returned (and warned about once), never raised."""
    ep = importlib.metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)
    try:
        obj = ep.load()
    except BaseException as exc:  # a plugin's import may raise anything, even SystemExit
        if isinstance(exc, KeyboardInterrupt):
            raise
        return _failure(name, value, distribution, f"failed to import: {type(exc).__name__}: {exc}")
    problem = contract_problem(obj)
    if problem is None and obj.name != name:
        problem = f"registers the name {name!r} but its class is named {obj.name!r}"
    if problem is None:
        return obj  # type: ignore[no-any-return]
    return _failure(name, value, distribution, f"{value} {problem}")


def _failure(name: str, value: str, distribution: str, problem: str) -> PluginFailure:
    where = f" (from {distribution})" if distribution else ""
    warnings.warn(
        f"model plugin {name!r}{where} skipped: {problem}", SteadycastPluginWarning, stacklevel=4
    )
    return PluginFailure(name=name, entry_point=value, distribution=distribution, error=problem)


_failures: dict[tuple[str, str, str], PluginFailure] = {}


def _plugins(disabled: Sequence[str]) -> dict[str, tuple[type, str]]:
    """Loaded plugin classes by name, with their distribution; failures are recorded."""
    builtins = builtin_models()
    off = set(disabled)
    loaded: dict[str, tuple[type, str]] = {}
    for ep in _entry_points():
        dist = _distribution(ep)
        dist_name = dist.rsplit(" ", 1)[0]
        if off & {ep.name, dist_name}:
            continue
        key = (ep.name, ep.value, dist)
        result = _load(*key)
        if isinstance(result, type) and (ep.name in builtins or ep.name in loaded):
            owner = (
                "a built-in model" if ep.name in builtins else f"a model from {loaded[ep.name][1]}"
            )
            if key not in _failures:
                _failures[key] = _failure(
                    ep.name, ep.value, dist, f"its name is already taken by {owner}; rename it"
                )
            continue
        if isinstance(result, PluginFailure):
            _failures[key] = result
            continue
        loaded[ep.name] = (result, dist)
    return loaded


def available_models(plugins: bool = True, disabled: Sequence[str] = ()) -> dict[str, type]:
    """Every usable model class by name: built-ins first, then plugins (unless ``plugins`` is
    False or they are ``disabled``)."""
    models = builtin_models()
    if plugins:
        models.update({name: cls for name, (cls, _) in _plugins(disabled).items()})
    return models


def plugin_failures() -> list[PluginFailure]:
    """Plugins that were skipped so far in this process, with the reason."""
    return list(_failures.values())


def reload_plugins() -> None:
    """Forget loaded plugins and recorded failures (entry points are read again next time)."""
    _entry_points.cache_clear()
    _load.cache_clear()
    _failures.clear()


def _find(name: str) -> type | None:
    """The class called ``name``: a built-in, else the first plugin that loads under that name.

    Only entry points with that name are imported, so creating a model in a worker does not
    import every plugin installed.
    """
    builtin = builtin_models().get(name)
    if builtin is not None:
        return builtin
    for ep in _entry_points():
        if ep.name != name:
            continue
        key = (ep.name, ep.value, _distribution(ep))
        result = _load(*key)
        if isinstance(result, PluginFailure):
            _failures[key] = result
            continue
        return result
    return None


def create_model(name: str, params: Mapping[str, Any] | None = None) -> ForecastModel:
    """An instance of the model called ``name``, built with ``params``.

    Raises ``ConfigError`` naming an unknown model (and listing the known ones), a plugin that
    failed to load (and why), or a parameter the model does not accept.
    """
    cls = _find(ALIASES.get(name, name))
    if cls is None:
        broken = [f for f in plugin_failures() if f.name == name]
        if broken:
            raise ConfigError(f"model {name!r} could not be loaded: {broken[0].error}")
        known = ", ".join(sorted(available_models()))
        raise ConfigError(f"unknown model {name!r}; known models: {known}")
    try:
        model = cls(**dict(params or {}))
    except ConfigError:
        raise
    except TypeError as exc:
        raise ConfigError(f"model {name!r} does not accept these parameters: {exc}") from None
    return model  # type: ignore[no-any-return]


def describe_models(plugins: bool = True, disabled: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One row per usable model, for ``steadycast models``."""
    rows: list[dict[str, Any]] = []
    sources: dict[str, str] = {name: "" for name in builtin_models()}
    if plugins:
        sources.update({name: dist for name, (_, dist) in _plugins(disabled).items()})
    for name, cls in available_models(plugins, disabled).items():
        caps: Capabilities = cls.capabilities  # type: ignore[attr-defined]
        rows.append(
            {
                "name": name,
                "source": "builtin" if name in builtin_models() else "plugin",
                "distribution": sources.get(name) or None,
                "intervals": caps.intervals,
                "min_history": caps.min_history,
                "handles_zeros": caps.handles_zeros,
                "intermittent": caps.intermittent,
                "global": caps.global_model,
                "tier": caps.cost,
            }
        )
    return rows
