"""Data quality: checks on the data, the gate on the run, remedies for single series.

    checks/       the ``check`` stage: series-level and run-level checks, Spec -> Result
    gate.py       circuit breakers over a run as a whole, after forecast and before publish
    remedy.py     per-series fixes for forecasts the gate would reject, before it judges
    severity.py   one ``Severity`` (info < warning < error) for checks, gate rules and incidents

Importing this package loads only ``severity``: the configuration validates severities with it,
and the checks read the configuration.
"""

from steadycast.quality.severity import Severity

__all__ = ["Severity", "checks", "gate", "remedy", "severity"]
