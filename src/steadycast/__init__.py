"""steadycast: forecasts that just work.

The public Python API; everything not listed in ``__all__`` may change between versions.
"""

from typing import TYPE_CHECKING

from steadycast.errors import (
    ConfigError,
    InputFileError,
    ModelError,
    ModelOutputError,
    NotFoundError,
    ParityError,
    SteadycastError,
    StoreBusyError,
    UsageError,
    WorkspaceError,
)

if TYPE_CHECKING:  # what type checkers and editors see of the names that load on first use
    from steadycast.config import PipelineConfig, load_pipeline
    from steadycast.frames import read_forecast, read_scores
    from steadycast.ingestion.batch import ingest
    from steadycast.models.base import Capabilities, ForecastModel, ForecastTask
    from steadycast.pipeline.levers import approve, rollback
    from steadycast.pipeline.run import run_pipeline
    from steadycast.quick import QuickForecast, forecast
    from steadycast.testing import check_model
    from steadycast.workspace import Workspace

__version__ = "0.1.0"

# Everything but the errors loads on first use (the configuration needs pydantic, the pipeline
# entry points the data and forecasting libraries), so the command line and the server start
# quickly.
_LAZY = {
    "PipelineConfig": ("steadycast.config", "PipelineConfig"),
    "load_pipeline": ("steadycast.config", "load_pipeline"),
    "Workspace": ("steadycast.workspace", "Workspace"),
    "ingest": ("steadycast.ingestion.batch", "ingest"),
    "read_forecast": ("steadycast.frames", "read_forecast"),
    "read_scores": ("steadycast.frames", "read_scores"),
    "forecast": ("steadycast.quick", "forecast"),
    "QuickForecast": ("steadycast.quick", "QuickForecast"),
    "run_pipeline": ("steadycast.pipeline.run", "run_pipeline"),
    "approve": ("steadycast.pipeline.levers", "approve"),
    "rollback": ("steadycast.pipeline.levers", "rollback"),
    "check_model": ("steadycast.testing", "check_model"),
    "ForecastModel": ("steadycast.models.base", "ForecastModel"),
    "ForecastTask": ("steadycast.models.base", "ForecastTask"),
    "Capabilities": ("steadycast.models.base", "Capabilities"),
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'steadycast' has no attribute {name!r}")


__all__ = [
    "Capabilities",
    "ConfigError",
    "ForecastModel",
    "ForecastTask",
    "InputFileError",
    "ModelError",
    "ModelOutputError",
    "NotFoundError",
    "ParityError",
    "PipelineConfig",
    "QuickForecast",
    "SteadycastError",
    "StoreBusyError",
    "UsageError",
    "Workspace",
    "WorkspaceError",
    "__version__",
    "approve",
    "check_model",
    "forecast",
    "ingest",
    "load_pipeline",
    "read_forecast",
    "read_scores",
    "rollback",
    "run_pipeline",
]
