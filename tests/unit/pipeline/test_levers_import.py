"""The server loads the levers (approve, rollback) at start; they must not bring the
forecasting stack with them (model libraries take seconds to import and much memory)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "statsforecast",
    "mlforecast",
    "lightgbm",
    "steadycast.forecasting",
    "steadycast.models",
    "steadycast.engines",
    "steadycast.pipeline.run",
)


def test_loading_the_levers_loads_no_forecasting_code() -> None:
    code = (
        "import sys, steadycast.pipeline.levers\n"
        f"print(sorted(m for m in sys.modules if m.startswith({HEAVY!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
