"""Operations: what tells a person how the pipelines are doing, and what needs them.

    incidents.py   findings become incidents: de-duplicated, with a state a person moves
    watch.py       the one path from findings to incidents to alerts, used by the run and by
                   ``steadycast monitor``; realised accuracy and SLA watching
    alerts.py      webhook and log channels; an alert never fails the run
    accuracy.py    realised accuracy: published forecasts scored against their actuals; drift
    sla.py         deadlines and data freshness
    advice.py      the commands the product suggests, written to work when pasted
    metrics.py     Prometheus metrics built from the records at each scrape
    hogs.py        run history and the pipelines, stages and models that cost the most
    logging.py     text and JSON logs, each line carrying its run
    resources.py   wall time, CPU time and peak memory of a piece of work
    failpoints.py  fault injection for the reliability tests (``STEADYCAST_FAILPOINT``)

Importing this package loads none of its modules.
"""

__all__ = [
    "accuracy",
    "advice",
    "alerts",
    "failpoints",
    "hogs",
    "incidents",
    "logging",
    "metrics",
    "resources",
    "sla",
    "watch",
]
