"""Carry over the current release's forecasts of series a run's checks excluded.

A series excluded by a check (policy ``exclude``: a broken meter, a feed fault) is not
forecast, but its consumers still read it: the release keeps serving its last good forecast,
the rows of the current release as they are, with a provenance row (``source``
"carried_over") that says which check excluded it and why. A series with no forecast in the
current release is simply absent; the run names it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

__all__ = ["CARRIED_OVER", "carry_over"]

ID = "unique_id"
CARRIED_OVER = "carried_over"


def carry_over(
    forecasts: pd.DataFrame,
    provenance: pd.DataFrame,
    excluded: Mapping[str, Sequence[str]],
    current: pd.DataFrame | None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """``forecasts`` and ``provenance`` with the current release's rows of the ``excluded``
    series added (``excluded``: series -> the sentences of the checks that excluded it);
    returns them and the excluded series that had nothing to carry over."""
    if not excluded:
        return forecasts, provenance, []
    wanted = sorted(map(str, excluded))
    if current is None or current.empty:
        return forecasts, provenance, wanted
    ids = current[ID].astype(str)
    rows = current[ids.isin(wanted)].copy()
    rows[ID] = rows[ID].astype(str)
    if forecasts is not None and len(forecasts):
        rows = rows[[c for c in rows.columns if c in forecasts.columns]]
        if "ds" in forecasts and len(rows):
            rows["ds"] = pd.to_datetime(rows["ds"]).astype(forecasts["ds"].dtype)
    carried = sorted(rows[ID].unique())
    missing = sorted(set(wanted) - set(carried))
    if not carried:
        return forecasts, provenance, missing
    models = rows.groupby(ID)["model"].first() if "model" in rows else pd.Series(dtype=object)
    steps = rows.groupby(ID).size()
    prov = pd.DataFrame(
        {
            ID: carried,
            "model": [str(models.get(u, "")) for u in carried],
            "source": CARRIED_OVER,
            "fallback_reason": [
                "excluded by its checks, so the current release's forecast is carried over: "
                + "; ".join(excluded[u])
                for u in carried
            ],
            "steps": [int(steps[u]) for u in carried],
        }
    )
    if len(provenance):
        prov = prov.reindex(
            columns=list(provenance.columns) + [c for c in prov if c not in provenance]
        )
    frames = [f for f in (forecasts, rows) if f is not None and len(f)]
    out = pd.concat(frames, ignore_index=True) if frames else rows
    prov_frames = [p for p in (provenance, prov) if len(p)]
    return out, pd.concat(prov_frames, ignore_index=True), missing
