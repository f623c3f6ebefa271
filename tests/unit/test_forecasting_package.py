"""The forecasting and synth packages: their module map and public names."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import steadycast.forecasting
import steadycast.synth


@pytest.mark.parametrize("package", [steadycast.forecasting, steadycast.synth])
def test_the_docstring_lists_every_module_and_the_names_resolve(package: object) -> None:
    doc = str(package.__doc__)
    modules = [m.name for m in pkgutil.iter_modules(package.__path__)]  # type: ignore[attr-defined]
    assert modules
    for name in modules:
        assert f"{name}.py" in doc, f"{package.__name__} docstring does not list {name}.py"  # type: ignore[attr-defined]
    for name in package.__all__:  # type: ignore[attr-defined]
        value = getattr(package, name, None)
        if value is None:  # a module name: it imports
            value = importlib.import_module(f"{package.__name__}.{name}")  # type: ignore[attr-defined]
        assert value is not None


def test_forecasting_publishes_its_modules_not_its_private_kernels() -> None:
    names = set(steadycast.forecasting.__all__)
    public = {m.name for m in pkgutil.iter_modules(steadycast.forecasting.__path__)}
    assert names == {m for m in public if not m.startswith("_")}


def test_importing_forecasting_loads_none_of_its_modules() -> None:
    code = (
        "import sys, steadycast.forecasting\n"
        "print(' '.join(m for m in sys.modules if m.startswith('steadycast.forecasting.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == []
