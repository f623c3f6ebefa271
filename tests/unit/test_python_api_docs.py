"""Every example of docs/python-api.md runs, in order, as the cells of one notebook."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"


def examples() -> list[str]:
    """The ```python blocks of the page, in order."""
    return re.findall(r"^```python\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.S | re.M)


def test_the_page_has_an_example_of_each_promised_use() -> None:
    text = "\n".join(examples())
    for call in (
        "steadycast.ingest(",
        "run_pipeline(",
        "read_forecast(",
        "read_scores(",
        "forecast(",
    ):
        assert call in text, call


def test_every_example_runs_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__notebook__"}
    for number, code in enumerate(examples(), start=1):
        # A failure's traceback names the example ("python-api.md example 6", line in it).
        exec(compile(code, f"{DOC.name} example {number}", "exec"), namespace)
    # What the page says the cells show.
    batch = namespace["batch"]
    assert batch.rows_quarantined == 1 and batch.quarantine_reasons == {"below_min": 1}
    assert namespace["run"].status == "published"
    quick = namespace["quick"]
    assert list(quick.columns)[:4] == ["unique_id", "ds", "yhat", "model"]
    assert len(quick) == 3 * 24
    assert list(namespace["small"].columns) == [
        "meter",
        "time",
        "yhat",
        "model",
        "yhat_lo_90",
        "yhat_hi_90",
    ]
    assert namespace["result"].quarantine["row"].tolist() == [5]
