"""The public surface: ``steadycast.__all__`` is the documented list, and each name keeps its
promise (the kind users expect, a docstring, a quick import)."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import steadycast
from steadycast.errors import SteadycastError

README = Path(__file__).resolve().parents[2] / "README.md"
#: The libraries the pipeline entry points and the model contract pull in on first use.
HEAVY = ("statsforecast", "mlforecast", "lightgbm", "plotly", "fastapi", "uvicorn", "pyspark")


def documented() -> dict[str, set[str]]:
    """The README's "The Python API" section: each bullet's label and the names it lists."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## The Python API\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## The Python API' section"
    kinds: dict[str, set[str]] = {}
    for bullet in re.split(r"^- ", section[1], flags=re.M)[1:]:
        label, _, rest = bullet.partition(":")
        kinds[label.strip() if rest else ""] = set(re.findall(r"`(\w+)`", rest or label))
    return kinds


def test_all_is_exactly_the_documented_list() -> None:
    names = set().union(*documented().values())
    assert sorted(steadycast.__all__) == sorted(names)
    assert len(steadycast.__all__) == len(set(steadycast.__all__))


def test_every_name_resolves_to_its_documented_kind() -> None:
    kinds = documented()
    for name in kinds["Functions"]:
        assert inspect.isfunction(getattr(steadycast, name)), name
    for name in kinds["Classes"]:
        value = getattr(steadycast, name)
        assert inspect.isclass(value) and not issubclass(value, BaseException), name
    for name in kinds["Errors"]:
        value = getattr(steadycast, name)
        assert inspect.isclass(value) and issubclass(value, SteadycastError), name
    assert re.fullmatch(r"\d+\.\d+\.\d+", steadycast.__version__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'run'"):
        steadycast.run  # noqa: B018


def test_every_public_function_and_class_has_a_docstring() -> None:
    for name in steadycast.__all__:
        value = getattr(steadycast, name)
        if inspect.isfunction(value) or (
            inspect.isclass(value) and not issubclass(value, SteadycastError)
        ):
            assert (inspect.getdoc(value) or "").strip(), f"{name} has no docstring"


def test_the_entry_points_are_the_real_functions() -> None:
    from steadycast.ingestion.batch import ingest
    from steadycast.pipeline.levers import approve, rollback
    from steadycast.pipeline.run import run_pipeline
    from steadycast.testing import check_model

    assert steadycast.run_pipeline is run_pipeline
    assert steadycast.ingest is ingest
    assert steadycast.approve is approve
    assert steadycast.rollback is rollback
    assert steadycast.check_model is check_model


def _loaded_on_import(*modules: str) -> list[str]:
    """Which of ``modules`` a fresh ``import steadycast`` loads (in a child process)."""
    code = f"import sys, steadycast\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.split()


def test_import_does_not_load_the_forecasting_libraries() -> None:
    assert _loaded_on_import(*HEAVY) == []


def test_import_does_not_load_pandas_or_duckdb() -> None:
    assert _loaded_on_import("pandas", "duckdb") == []
