"""One severity for data-quality checks, gate rules and incidents, ordered info < warning < error.

The values are the strings stored today in the store and the control plane, written in pipeline
files and returned by the API: a ``Severity`` is a ``str`` equal to its value, so none of them
changes. Its order lives here only; plain strings read back from storage are ranked with
``rank`` and compared with ``at_least``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Severity", "at_least", "rank"]


class Severity(StrEnum):
    """How bad a finding is: ``info`` is recorded, ``warning`` alerts, ``error`` is the worst."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        """0 for info, 1 for warning, 2 for error."""
        return _ORDER.index(self)

    @classmethod
    def parse(cls, value: str, what: str = "severity") -> Severity:
        """``value`` as a severity; a ``ValueError`` naming ``what`` and the allowed values."""
        member = _BY_VALUE.get(value) if isinstance(value, str) else None
        if member is None:
            raise ValueError(f"{what} {value!r} is not one of {', '.join(_ORDER)}")
        return member

    # Ordered by rank, not alphabetically as a plain str would be ("error" < "info").
    def __lt__(self, other: str) -> bool:
        return self.rank < Severity.parse(other).rank

    def __le__(self, other: str) -> bool:
        return self.rank <= Severity.parse(other).rank

    def __gt__(self, other: str) -> bool:
        return self.rank > Severity.parse(other).rank

    def __ge__(self, other: str) -> bool:
        return self.rank >= Severity.parse(other).rank


_ORDER: tuple[Severity, ...] = (Severity.INFO, Severity.WARNING, Severity.ERROR)
_BY_VALUE: dict[str, Severity] = {s.value: s for s in _ORDER}


def rank(value: str, unknown: int = 0) -> int:
    """The rank of a severity as stored (a plain string); ``unknown`` for any other value."""
    member = _BY_VALUE.get(value)
    return unknown if member is None else member.rank


def at_least(severity: str, minimum: str) -> bool:
    """True when ``severity`` is as bad as ``minimum`` or worse; both must be severities."""
    return Severity.parse(severity).rank >= Severity.parse(minimum).rank
