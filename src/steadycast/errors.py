"""The one error tree of steadycast.

Every error a user can see is a ``SteadycastError``; its ``exit_code`` is what the CLI returns.

    SteadycastError                    exit 1
    ├── UsageError                     exit 2   bad command-line use
    ├── ConfigError                    exit 2   a config file names a key, value or file wrongly
    ├── WorkspaceError                 exit 2   no workspace here, or one made by a newer version
    ├── StoreBusyError                 exit 1   another process holds the store or the pipeline
    ├── InputFileError                 exit 1   a whole input file cannot be read (names the file)
    ├── ParityError                    exit 1   rows in != rows out + rows rejected (a bug, loudly)
    ├── DataError                      exit 1   rows break a stage's contract (names the series)
    ├── ModelError                     exit 1   a model broke its contract (wrapped at the boundary)
    │   └── ModelOutputError           exit 1   what a model returned failed validation
    ├── SinkError                      exit 1   a sink could not take a release (names the sink)
    └── NotFoundError                  exit 2   an unknown pipeline, run, release, series or
        │                                       incident: one code in every command
        └── UnknownPipelineError       exit 2   no pipelines/NAME.toml for the name given

Errors that come from data carry the file, row or series in their message; errors raised by
user models are wrapped in ``ModelError`` with the original kept as ``__cause__``. Two errors
are defined elsewhere: ``steadycast.testing.ModelContractError`` (a ``ModelOutputError``), what
the conformance kit raises, and ``steadycast.server.triggers.RunInProgress`` (a
``StoreBusyError``), what the run endpoint answers 409 with. ``tests/unit/test_errors.py`` keeps
this drawing equal to the classes.
"""

from __future__ import annotations


class SteadycastError(Exception):
    """Base of every error steadycast raises on purpose."""

    exit_code = 1


class UsageError(SteadycastError):
    exit_code = 2


class ConfigError(SteadycastError):
    exit_code = 2


class WorkspaceError(SteadycastError):
    exit_code = 2


class StoreBusyError(SteadycastError):
    exit_code = 1


class InputFileError(SteadycastError):
    """A whole input file could not be read; the message names the file and the problem."""

    def __init__(self, file: str, problem: str) -> None:
        super().__init__(f"{file}: {problem}")
        self.file = file
        self.problem = problem


class ParityError(SteadycastError):
    """Rows were lost or invented between two stages; never expected, always loud."""


class DataError(SteadycastError):
    """Rows handed to a stage break its contract (one row per series and time, on the grid);
    the message names the series and the first offending time."""

    def __init__(self, series: str, problem: str) -> None:
        super().__init__(f"series {series!r}: {problem}")
        self.series = series
        self.problem = problem


class ModelError(SteadycastError):
    """A model failed; the message names the model and, where known, the series."""

    def __init__(self, model: str, problem: str, series: str | None = None) -> None:
        where = f" for series {series!r}" if series is not None else ""
        super().__init__(f"model {model!r}{where}: {problem}")
        self.model = model
        self.series = series
        self.problem = problem


class ModelOutputError(ModelError):
    """What a model returned failed validation (ids, horizon, timestamps, finiteness)."""


class SinkError(SteadycastError):
    """A published release could not be written to a sink; the release stays published and
    the sink is retried on the next run. The message names the sink, never a credential."""

    def __init__(self, sink: str, problem: str) -> None:
        super().__init__(f"sink {sink}: {problem}")
        self.sink = sink
        self.problem = problem


class NotFoundError(SteadycastError):
    """The command names something that is not there: a usage error (exit 2) in every command,
    so a scheduler can tell "asked for the wrong thing" from "it failed" (exit 1)."""

    exit_code = 2


class UnknownPipelineError(NotFoundError):
    """The command names a pipeline that has no file."""
