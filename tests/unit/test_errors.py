"""The error tree drawn in ``steadycast/errors.py``'s docstring is the tree of its classes."""

from __future__ import annotations

import re

import steadycast.errors as errors
from steadycast.errors import SteadycastError

# One drawn line: the branch art, the class name, its exit code.
LINE = re.compile(
    r"^    (?P<art>(?:[│ ]   |├── |└── )*)(?P<name>[A-Z]\w+Error)\s+exit (?P<code>\d)"
)


def _drawn() -> list[tuple[int, str, int]]:
    """(depth, class name, exit code) for each line of the drawing, top to bottom."""
    out = []
    for line in (errors.__doc__ or "").splitlines():
        found = LINE.match(line)
        if found:
            out.append((len(found["art"]) // 4, found["name"], int(found["code"])))
    return out


def _built() -> list[tuple[int, str, int]]:
    """The same from the classes: depth first, children in the order the module defines them."""
    order = list(vars(errors))

    def walk(cls: type[SteadycastError], depth: int) -> list[tuple[int, str, int]]:
        rows = [(depth, cls.__name__, cls.exit_code)]
        children = [c for c in cls.__subclasses__() if c.__module__ == errors.__name__]
        for child in sorted(children, key=lambda c: order.index(c.__name__)):
            rows += walk(child, depth + 1)
        return rows

    return walk(SteadycastError, 0)


def test_the_drawing_is_the_class_tree_with_its_exit_codes() -> None:
    assert _drawn() == _built()


def test_every_error_class_of_the_module_is_drawn() -> None:
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, SteadycastError)
    }
    assert {name for _, name, _ in _drawn()} == defined


def test_errors_defined_elsewhere_are_named_in_the_docstring() -> None:
    import steadycast.testing  # noqa: F401  (defines the conformance kit's error)

    def subclasses(cls: type) -> set[type]:
        return {s for c in cls.__subclasses__() for s in {c, *subclasses(c)}}

    outside = {c for c in subclasses(SteadycastError) if c.__module__.startswith("steadycast.")} - {
        c for c in subclasses(SteadycastError) if c.__module__ == errors.__name__
    }
    for cls in outside:
        assert f"{cls.__module__}.{cls.__name__}" in (errors.__doc__ or ""), cls
