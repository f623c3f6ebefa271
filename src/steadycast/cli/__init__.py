"""The ``steadycast`` command line: parse the arguments, call the Python API, print the answer.

Commands hold no logic of their own: what they show comes from the functions the Python API and
the server use too. One module per command group:

    _app.py        the Typer app, the shared options (-w/--workspace, --json), output helpers,
                   the progress bar, and ``main``: errors to one line on stderr and an exit code
                   (0 success; 1 failure; 2 usage or configuration error; 3 run held by a gate;
                   4 published but a sink does not hold the release)
    _failures.py   unexpected errors (a full disk, a bug) as one line; loaded only on one
    workspace.py   init
    ingest.py      ingest, quarantine: data in, and the rows turned away
    run.py         run, approve, rollback: a run and the two levers after it
    status.py      status, runs, releases, forecast, report: what a pipeline did and serves
    incidents.py   incidents, ack, resolve
    monitor.py     monitor: realised accuracy and SLAs, on a schedule
    validate.py    validate: every problem in the workspace's configuration files
    metrics.py     metrics, hogs: what the workspace counts and costs
    models.py      models: built-in and plugged-in
    serve.py       serve: the HTTP API and the dashboard
    sinks.py       sinks list, sinks retry: what each sink holds, and a retry
    synth.py       synth: a synthetic fleet with planted faults
    demo.py        demo: the whole job on the bundled sample

Each command imports what it works with inside its function, so ``steadycast --help`` and
``steadycast COMMAND --help`` load none of the data or forecasting libraries.
"""

from __future__ import annotations

from steadycast.cli import (
    demo,
    incidents,
    ingest,
    metrics,
    models,
    monitor,
    run,
    serve,
    sinks,
    status,
    synth,
    validate,
    workspace,
)
from steadycast.cli._app import app, main

# Registered here, in the order ``steadycast --help`` lists them.
for _command in (
    workspace.init,
    ingest.ingest,
    ingest.quarantine,
    run.run,
    status.forecast,
    status.releases,
    run.rollback,
    status.report,
    status.runs,
    metrics.hogs,
    run.approve,
    incidents.incidents,
    incidents.ack,
    incidents.resolve,
    status.status,
    synth.synth,
    serve.serve,
    monitor.monitor,
    validate.validate,
    metrics.metrics,
    models.models,
    demo.demo,
):
    app.command()(_command)
del _command
app.add_typer(sinks.app, name="sinks")

__all__ = ["app", "main"]
