"""steadycast: forecasts that just work.

The public Python API; everything not listed in ``__all__`` may change between versions.
"""

from steadycast.config import PipelineConfig, load_pipeline
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
from steadycast.workspace import Workspace

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "InputFileError",
    "ModelError",
    "ModelOutputError",
    "NotFoundError",
    "ParityError",
    "PipelineConfig",
    "SteadycastError",
    "StoreBusyError",
    "UsageError",
    "Workspace",
    "WorkspaceError",
    "__version__",
    "load_pipeline",
]
