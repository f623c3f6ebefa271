"""Test plugins for steadycast; see README.md. ``planted_pattern`` builds series the oracle wins on."""

from steadycast_chaos_models.pattern import planted_pattern

__all__ = ["planted_pattern"]
