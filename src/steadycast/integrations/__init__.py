"""Integrations with the tools a data team already runs, each an optional extra that loads only
when its module is imported (``import steadycast`` never needs one).

    dagster.py       each pipeline as Dagster assets (ingest -> run -> release), the gate's
                     rules as asset checks, a sensor on new files (extra ``dagster``)
    dagster_defs.py  the definitions of ``$STEADYCAST_WORKSPACE``, for
                     ``dagster dev -m steadycast.integrations.dagster_defs``
"""

__all__ = ["dagster", "dagster_defs"]
