"""Pipeline: one run of a pipeline as a declared list of stages, and the levers a person pulls.

    run.py             ``run_pipeline`` and ``continue_stopped_run``: the list of stages
    scope.py           what every stage is given (``RunScope``), ``RunResult``, ``STAGES``
    start.py           before the first stage: engine, models, config audit, realised accuracy
    snapshot.py        snapshot stage: the observations copied into Parquet partitions
    checking.py        check stage: data checks per partition, their stored results, policies
    forecast_stage.py  forecast stage: partitions on the engine, resumption, parity, scores
    partition_work.py  one partition's work as an engine runs it, committed exactly once
    carry.py           excluded series keep serving their last published forecast
    gating.py          gate stage: the run judged as a whole, its export and its findings
    publish.py         publish or hold: release, current pointer, run record, audit (also for
                       an approval)
    override.py        an approval of a run its data checks stopped, read back from its record
    failure.py         a failed run's record and the pipeline's ``failed`` incident
    levers.py          approve and roll back (loads no forecasting code: the server imports it)
    unchanged.py       whether a run has anything new since the last published or held run
    many.py            several pipelines one after another (``run --all`` / ``--select``)
    status.py          a pipeline's status and the summaries of every pipeline

Importing this package loads none of its modules.
"""

__all__ = [
    "carry",
    "checking",
    "failure",
    "forecast_stage",
    "gating",
    "levers",
    "many",
    "override",
    "partition_work",
    "publish",
    "run",
    "scope",
    "snapshot",
    "start",
    "status",
    "unchanged",
]
