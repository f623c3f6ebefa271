"""A steadycast model plugin to copy."""

from steadycast_model_template.model import SeasonalMedian

__all__ = ["SeasonalMedian"]
