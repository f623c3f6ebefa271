"""Score data-quality findings against a fleet's ground truth, series by series.

A check is judged on the series it flags, not on the exact step: the check stage excludes or
warns per series, so that is the unit a person acts on.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

# Which check is meant to find each planted fault. ``dst`` and ``duplicate`` are ingest's job
# (quarantine reasons ``nonexistent_local_time`` / ``ambiguous_local_time`` and ``duplicate``
# or unchanged rows), so no series check is mapped to them.
DEFAULT_MAPPING: dict[str, str] = {
    "stuck": "flat_line",
    "zeros": "flat_line",
    "spike": "spikes",
    "gap": "completeness",
    "level_shift": "level_shift",
    "late": "freshness",
}

SCORE_COLUMNS = (
    "fault",
    "check",
    "planted",
    "flagged",
    "true_positives",
    "precision",
    "recall",
)


def score_checks(
    ground_truth: pd.DataFrame,
    findings: pd.DataFrame,
    mapping: Mapping[str, str],
    *,
    since: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Per fault kind in ``mapping``: precision and recall of its check at the series level.

    ``findings`` needs ``unique_id`` and ``check`` columns (``results_frame`` output works);
    with a ``passed`` column only failed rows count as flags. ``recall`` is the share of the
    series planted with the fault that the check flags. ``precision`` is the share of the
    series the check flags that carry any fault mapped to that check (stuck and zero runs are
    both the flat-line check's to find, so either makes its flag right). ``since`` keeps only
    faults that reach ``since`` or later (what a check with a recent window can see); series
    with older faults then count as neither planted nor wrong when flagged. NaN where there is
    nothing to divide by.
    """
    missing = [c for c in ("unique_id", "check") if c not in findings.columns]
    if missing:
        raise ValueError(
            f"findings lack column(s) {missing}; pass a frame with unique_id and check "
            "(e.g. steadycast.quality.checks.results_frame(results))"
        )
    missing = [c for c in ("unique_id", "fault") if c not in ground_truth.columns]
    if missing:
        raise ValueError(f"ground_truth lacks column(s) {missing}; read DIR/ground_truth.parquet")
    flags = findings
    if "passed" in flags.columns:
        flags = flags[~flags["passed"].astype(bool)]
    flags = flags[flags["unique_id"].notna()]
    flagged_by = {c: set(map(str, g["unique_id"])) for c, g in flags.groupby("check")}
    truth = ground_truth
    ignored: dict[str, set[str]] = {}
    if since is not None:
        old = truth["end"] < since
        for fault, g in truth[old].groupby("fault"):
            ignored[str(fault)] = set(map(str, g["unique_id"]))
        truth = truth[~old]
    planted_with = {str(f): set(map(str, g["unique_id"])) for f, g in truth.groupby("fault")}
    rows = []
    for fault, check in mapping.items():
        planted = planted_with.get(fault, set())
        flagged = flagged_by.get(check, set())
        right = set().union(*(planted_with.get(f, set()) for f, c in mapping.items() if c == check))
        excused = set().union(*(ignored.get(f, set()) for f, c in mapping.items() if c == check))
        judged = flagged - (excused - right)
        hits = len(planted & flagged)
        rows.append(
            {
                "fault": fault,
                "check": check,
                "planted": len(planted),
                "flagged": len(judged),
                "true_positives": hits,
                "precision": len(judged & right) / len(judged) if judged else float("nan"),
                "recall": hits / len(planted) if planted else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
