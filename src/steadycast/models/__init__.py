"""Models: the contract, the registry of built-ins and plugins, validation and isolation.

    base.py         Capabilities, ForecastTask, the ForecastModel Protocol
    statistical.py  built-ins backed by statsforecast (one small class per model)
    ml.py           LightGBM, the built-in global model (mlforecast)
    fast.py         vectorised baselines and FastTheta for the fast tier
    card.py         Card: least-squares autoregressions in logs, vectorised over series
    exogenous.py    CovariateRegression: the model of future-known covariates
    registry.py     names -> classes: built-ins plus the ``steadycast.models`` entry points
    validation.py   validate_forecast: the boundary between model output and the platform
    isolation.py    run model code in worker processes with time and memory limits
    _worker.py      the worker process itself

Heavy libraries (statsforecast, mlforecast, lightgbm) are imported when a model first runs, so
importing this package is cheap.
"""

from steadycast.models.base import Capabilities, ForecastModel, ForecastTask
from steadycast.models.isolation import IsolatedRunner, ModelUsage, run_model
from steadycast.models.registry import (
    PluginFailure,
    SteadycastPluginWarning,
    available_models,
    create_model,
    describe_models,
    plugin_failures,
)
from steadycast.models.validation import validate_forecast

__all__ = [
    "Capabilities",
    "ForecastModel",
    "ForecastTask",
    "IsolatedRunner",
    "ModelUsage",
    "PluginFailure",
    "SteadycastPluginWarning",
    "available_models",
    "create_model",
    "describe_models",
    "plugin_failures",
    "run_model",
    "validate_forecast",
]
