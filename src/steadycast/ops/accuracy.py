"""Realised accuracy: score what was published once its actuals arrive, and watch for drift.

A release promises something: its backtest said the chosen model of each series scores, say,
MASE 0.8. Step 8 of the pipeline checks the promise when the actuals for the forecast periods
are ingested in later batches:

1. :func:`score_releases` joins each recent release's forecasts with the observations now stored
   for the same ``(unique_id, ds)`` and scores them per series with the platform's own metrics
   (:mod:`steadycast.forecasting.metrics`: MASE, sMAPE, RMSSE and coverage at each interval level of the
   release). MASE and RMSSE are scaled by the series' history before the release's first
   forecast time, regularised as a run regularises it, with the main season, so a realised score
   is on the same scale as the backtest score it is compared with. The *overall* score of a
   release is the mean over its scored series, as the backtest's is.
2. The scores go to the store's ``realised_accuracy`` table (long, like ``backtest_scores``:
   one row per release x series x metric, ``unique_id`` NULL for the release overall), each
   with what the backtest *promised*: the mean backtest score of the model that made the series'
   forecast, in the run that made the release. A release is rescored, and its rows replaced,
   whenever the actuals matching it change (more arrived, or a correction): a digest of the
   matched actuals is stored with its rows, so an unchanged release costs one small query.
3. :func:`drift_findings` compares realised with promised on the pipeline's backtest metric,
   for the newest release with enough actuals to judge (``[monitor] min_points`` per series):
   realised over promised above ``drift_factor`` opens ``drift:PIPELINE``; a share of drifting
   series above ``series_share`` opens ``drift:PIPELINE:series`` naming the worst.
4. :func:`accuracy_trend` gives the overall scores release by release, for the report and the
   dashboard.

:func:`monitor` does 1-3 in one call for the run and the ``steadycast monitor`` command.

Every store connection here is short-lived (one per release read, one per release write), so
monitoring never holds the store while it computes.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from steadycast.config import PipelineConfig
from steadycast.forecasting.metrics import (
    Metric,
    coverage,
    evaluate,
    mase,
    metric_name,
    rmsse,
    smape,
)
from steadycast.forecasting.prepare import regularize
from steadycast.models.validation import to_naive_utc
from steadycast.ops.incidents import Finding, fingerprint
from steadycast.storage import releases, store
from steadycast.workspace import Workspace

__all__ = [
    "ERROR_METRICS",
    "MonitorResult",
    "accuracy_trend",
    "drift_findings",
    "min_points",
    "monitor",
    "score_releases",
    "stored_scores",
]

ID, DS, Y = "unique_id", "ds", "y"
# Lower is better; drift is judged on one of these (the pipeline's backtest metric).
ERROR_METRICS: tuple[str, ...] = ("mase", "smape", "rmsse")
_MODEL = "release"  # the one "model" column of the wide frame handed to the metrics
_LEVEL_COLUMN = re.compile(r"^yhat_lo_(\d+)$")
_KEYS = ["release_id", "run_id", "created_at", ID, "model", "series", "points", "expected"]
_STORED = [
    "pipeline",
    "release_id",
    "run_id",
    "created_at",
    ID,
    "model",
    "metric",
    "value",
    "promised",
    "series",
    "points",
    "expected",
    "actuals_digest",
    "scored_at",
]


@dataclass(frozen=True)
class MonitorResult:
    """What one monitoring pass did.

    ``scored``: the releases (re)scored now, in the shape of :func:`stored_scores`.
    ``judged_release``: the release drift was judged on (None: none had enough actuals).
    ``findings`` and ``kinds``: pass both to ``incidents.record_findings``; ``kinds`` is
    ``["drift"]`` only when a judgement was made, so a pass without evidence never resolves a
    live drift incident.
    """

    scored: pd.DataFrame
    judged_release: str | None = None
    ratio: float | None = None
    findings: list[Finding] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)


def min_points(cfg: PipelineConfig) -> int:
    """Actuals a series needs before it is judged for drift: ``[monitor] min_points``, or half
    the horizon (at least 1) when it is 0, since a score over one or two points is noise."""
    return cfg.monitor.min_points or max(1, math.ceil(cfg.series.horizon / 2))


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------


def _levels(forecasts: pd.DataFrame) -> list[int]:
    found = []
    for column in forecasts.columns:
        match = _LEVEL_COLUMN.match(str(column))
        if match and f"yhat_hi_{match.group(1)}" in forecasts.columns:
            found.append(int(match.group(1)))
    return sorted(found)


def _digest(actuals: pd.DataFrame) -> str:
    """A content hash of the matched actuals: equal digests mean nothing to rescore."""
    frame = actuals[[ID, DS, Y]].sort_values([ID, DS], kind="stable").reset_index(drop=True)
    digest = hashlib.sha256(str(len(frame)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).values.tobytes())
    return digest.hexdigest()


def _utc_stamp(value: datetime | str) -> pd.Timestamp:
    """A time as the store keeps it: naive UTC (aware values are converted)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_convert(UTC).tz_localize(None) if stamp.tzinfo is not None else stamp


def _naive_utc(text: Any) -> pd.Timestamp | None:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    return _utc_stamp(text)


@dataclass
class _Inputs:
    """What one release needs from the store to be scored."""

    forecasts: pd.DataFrame
    actuals: pd.DataFrame
    history: pd.DataFrame
    promised: pd.DataFrame  # unique_id, model, metric, promised
    digest: str


def _read_inputs(
    ws: Workspace, pipeline: str, release: releases.Release, run_id: str, force: bool
) -> _Inputs | None:
    """Read a release's actuals and, when they changed since its last scoring, the history and
    backtest scores it needs; None when there is nothing (new) to score."""
    forecasts = releases.read_forecasts(release)
    if forecasts.empty:
        return None
    forecasts[ID] = forecasts[ID].astype(str)
    forecasts[DS] = to_naive_utc(forecasts[DS])
    keys = forecasts[[ID, DS]].drop_duplicates()
    firsts = keys.groupby(ID, as_index=False)[DS].min().rename(columns={DS: "first_ds"})
    # A cursor of its own: duckdb refuses register() on a connection with a pending result.
    with store.reading(ws.store_path) as reader, reader.cursor() as con:
        con.register("release_keys", keys)
        actuals = con.execute(
            "SELECT o.unique_id, o.ds, o.y FROM observations o "
            "JOIN release_keys k ON o.unique_id = k.unique_id AND o.ds = k.ds "
            "WHERE o.pipeline = ?",
            [pipeline],
        ).df()
        con.unregister("release_keys")
        if actuals.empty:
            return None
        actuals[DS] = to_naive_utc(actuals[DS])
        digest = _digest(actuals)
        stored = con.execute(
            "SELECT any_value(actuals_digest) FROM realised_accuracy "
            "WHERE pipeline = ? AND release_id = ?",
            [pipeline, release.release_id],
        ).fetchall()  # fetchone() would leave the result pending and block register() below
        if not force and stored and stored[0][0] == digest:
            return None
        scored_ids = firsts[firsts[ID].isin(actuals[ID].unique())]
        con.register("release_firsts", scored_ids)
        history = con.execute(
            "SELECT o.unique_id, o.ds, o.y FROM observations o "
            "JOIN release_firsts f ON o.unique_id = f.unique_id "
            "WHERE o.pipeline = ? AND o.ds < f.first_ds ORDER BY o.unique_id, o.ds",
            [pipeline],
        ).df()
        con.unregister("release_firsts")
        promised = con.execute(
            "SELECT unique_id, model, metric, avg(value) AS promised FROM backtest_scores "
            "WHERE pipeline = ? AND run_id = ? AND status = 'ok' AND value IS NOT NULL "
            "GROUP BY unique_id, model, metric",
            [pipeline, run_id],
        ).df()
    history[DS] = to_naive_utc(history[DS])
    return _Inputs(forecasts, actuals, history, promised, digest)


def _score_release(inputs: _Inputs, cfg: PipelineConfig) -> pd.DataFrame:
    """Per-series realised scores and promises of one release, wide:
    ``unique_id, model, points, expected, METRIC..., promised_METRIC...``."""
    fc = inputs.forecasts
    levels = _levels(fc)
    wide = fc.rename(columns={"yhat": _MODEL})
    for level in levels:
        wide = wide.rename(
            columns={
                f"yhat_lo_{level}": f"{_MODEL}-lo-{level}",
                f"yhat_hi_{level}": f"{_MODEL}-hi-{level}",
            }
        )
    wide = wide.merge(inputs.actuals, on=[ID, DS], how="inner")
    metrics: list[Metric] = [mase, smape, rmsse, *(coverage(level) for level in levels)]
    names = [metric_name(m) for m in metrics]
    max_fill = max(cfg.series.horizon, cfg.series.season_length)
    history, _ = regularize(inputs.history, cfg.series.frequency, max_fill=max_fill)
    scores = evaluate(
        wide[[ID, DS, Y, _MODEL, *(c for c in wide.columns if c.startswith(f"{_MODEL}-"))]],
        metrics,
        [_MODEL],
        history,
        cfg.series.season_length,
    ).drop(columns="model")
    counts = wide.groupby(ID).size().rename("points")
    expected = fc.groupby(ID).size().rename("expected")
    used = fc.groupby(ID)["model"].first() if "model" in fc.columns else pd.Series(dtype=str)
    out = scores.set_index(ID)
    out.insert(0, "expected", expected.reindex(out.index).astype(int))
    out.insert(0, "points", counts.reindex(out.index).astype(int))
    out.insert(0, "model", used.reindex(out.index).astype(object))
    promised = inputs.promised
    for name in names:
        table = promised[promised["metric"] == name].set_index([ID, "model"])["promised"]
        keys = list(zip(out.index, out["model"], strict=True))
        out[f"promised_{name}"] = [float(table.get(k, np.nan)) for k in keys]
    return out.reset_index()


def _long(
    per_series: pd.DataFrame,
    pipeline: str,
    release: releases.Release,
    run_id: str,
    expected: int,
    digest: str,
    scored_at: pd.Timestamp,
) -> pd.DataFrame:
    """Per-series wide scores plus the release overall (mean over series) -> stored rows."""
    names = [c for c in per_series.columns if f"promised_{c}" in per_series.columns]

    def mean(column: pd.Series) -> float:
        return float(np.nanmean(column)) if column.notna().any() else np.nan

    overall = {
        ID: None,
        "model": None,
        "series": len(per_series),
        "points": int(per_series["points"].sum()),
        "expected": expected,
        **{n: mean(per_series[n]) for n in names},
        **{f"promised_{n}": mean(per_series[f"promised_{n}"]) for n in names},
    }
    frame = pd.concat([per_series.assign(series=1), pd.DataFrame([overall])], ignore_index=True)
    parts = []
    for name in names:
        part = frame[[ID, "model", "series", "points", "expected"]].copy()
        part["metric"] = name
        part["value"] = frame[name].astype(float)
        part["promised"] = frame[f"promised_{name}"].astype(float)
        parts.append(part)
    rows = pd.concat(parts, ignore_index=True)
    rows["pipeline"] = pipeline
    rows["release_id"] = release.release_id
    rows["run_id"] = run_id
    rows["created_at"] = _naive_utc(release.manifest.get("created_at"))
    rows["actuals_digest"] = digest
    rows["scored_at"] = scored_at
    for name in (ID, "model"):
        rows[name] = rows[name].astype(object).where(rows[name].notna(), None)
    return rows[_STORED]


def _store(ws: Workspace, pipeline: str, release_id: str, rows: pd.DataFrame) -> None:
    """Replace a release's realised scores in one transaction."""
    cols = ", ".join(f'"{c}"' for c in _STORED)
    with store.writing(ws.store_path) as con:
        con.execute("BEGIN TRANSACTION")
        con.execute(
            "DELETE FROM realised_accuracy WHERE pipeline = ? AND release_id = ?",
            [pipeline, release_id],
        )
        con.register("realised_df", rows)
        con.execute(f"INSERT INTO realised_accuracy ({cols}) SELECT {cols} FROM realised_df")
        con.unregister("realised_df")
        con.execute("COMMIT")


def score_releases(
    ws: Workspace,
    pipeline: str,
    cfg: PipelineConfig,
    *,
    now: datetime | None = None,
    rescore: bool = False,
) -> pd.DataFrame:
    """Score the newest ``[monitor] max_releases`` releases of ``pipeline`` whose matched
    actuals changed since they were last scored (all of them with ``rescore=True``); store the
    scores, replacing earlier ones of the same release, and return them (shape of
    :func:`stored_scores`). ``now`` is the ``scored_at`` time (default: the wall clock).
    """
    stamp = _utc_stamp(now if now is not None else datetime.now(UTC))
    frames = []
    for release in releases.list_releases(ws.releases_dir, pipeline)[: cfg.monitor.max_releases]:
        run_id = str(release.manifest.get("run_id") or release.release_id)
        inputs = _read_inputs(ws, pipeline, release, run_id, rescore)
        if inputs is None:
            continue
        per_series = _score_release(inputs, cfg)
        rows = _long(
            per_series, pipeline, release, run_id, len(inputs.forecasts), inputs.digest, stamp
        )
        _store(ws, pipeline, release.release_id, rows)
        frames.append(rows)
    if not frames:
        return _wide(pd.DataFrame(columns=_STORED))
    return _wide(pd.concat(frames, ignore_index=True))


# ----------------------------------------------------------------------------------------------
# Reading scores back
# ----------------------------------------------------------------------------------------------


def _metric_order(name: str) -> tuple[int, int, str]:
    if name in ERROR_METRICS:
        return (0, ERROR_METRICS.index(name), name)
    match = re.match(r"coverage_(\d+)$", name)
    return (1, int(match.group(1)) if match else 0, name)


def _wide(long: pd.DataFrame) -> pd.DataFrame:
    """Stored long rows -> one row per release x series (``unique_id`` None: overall), with a
    column per metric and ``promised_METRIC`` beside it; newest release first, overall first."""
    metrics = sorted({str(m) for m in long["metric"].unique()}, key=_metric_order)
    columns = ["pipeline", *_KEYS, *metrics, *(f"promised_{m}" for m in metrics), "scored_at"]
    if long.empty:
        return pd.DataFrame(columns=columns)
    frame = long.copy()
    # NULL (overall) must survive the unstack; ingest never stores an empty id, so "" is free.
    frame["_overall"] = frame[ID].isna()
    frame["_uid"] = frame[ID].fillna("")
    frame["_model"] = frame["model"].fillna("")
    index = [
        "pipeline",
        "release_id",
        "run_id",
        "created_at",
        "_overall",
        "_uid",
        "_model",
        "series",
        "points",
        "expected",
        "scored_at",
    ]
    # One row per release x series x metric, so unstacking the metric never collides.
    keyed = frame.set_index([*index, "metric"])
    values = keyed["value"].unstack("metric")
    promised = keyed["promised"].unstack("metric")
    promised.columns = [f"promised_{c}" for c in promised.columns]
    out = values.join(promised).reset_index()
    out[ID] = pd.Series(
        [
            None if overall else uid
            for overall, uid in zip(out["_overall"], out["_uid"], strict=True)
        ],
        dtype=object,
    )
    out["model"] = pd.Series([v or None for v in out["_model"]], dtype=object)
    for name in ("series", "points", "expected"):
        out[name] = out[name].astype(int)
    out = out.sort_values(
        ["created_at", "release_id", "_overall", ID],
        ascending=[False, False, False, True],
        kind="stable",
    )
    for name in columns:
        if name not in out.columns:
            out[name] = np.nan
    return out[columns].reset_index(drop=True)


def stored_scores(ws: Workspace, pipeline: str, *, limit: int = 30) -> pd.DataFrame:
    """The stored realised scores of the newest ``limit`` scored releases of ``pipeline``:
    one row per release x series plus one overall row per release (``unique_id`` None), a
    column per metric (``mase, smape, rmsse, coverage_L``...) and ``promised_METRIC`` beside
    each; newest release first, its overall row first."""
    with store.reading(ws.store_path) as con:
        long = con.execute(
            f"SELECT {', '.join(_STORED)} FROM realised_accuracy WHERE pipeline = ? AND "
            "release_id IN (SELECT release_id FROM realised_accuracy WHERE pipeline = ? "
            "GROUP BY release_id ORDER BY max(created_at) DESC, release_id DESC LIMIT ?)",
            [pipeline, pipeline, int(limit)],
        ).df()
    for name in ("created_at", "scored_at"):
        long[name] = to_naive_utc(long[name])
    return _wide(long)


# ----------------------------------------------------------------------------------------------
# Drift
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Judgement:
    release_id: str
    run_id: str
    metric: str
    realised: float
    promised: float
    series: pd.DataFrame  # the judged series: unique_id, value, promised, ratio, points

    @property
    def ratio(self) -> float:
        return self.realised / self.promised if self.promised > 0 else math.inf


def _judge(results: pd.DataFrame, metric: str, min_points: int) -> _Judgement | None:
    """The newest release with at least one series that can be judged: ``min_points`` actuals
    or more, and a finite realised and a positive promised ``metric``."""
    if metric not in ERROR_METRICS:
        raise ValueError(
            f"drift is judged on an error metric ({', '.join(ERROR_METRICS)}), not {metric!r}"
        )
    promised_col = f"promised_{metric}"
    if results.empty or metric not in results.columns or promised_col not in results.columns:
        return None
    per_series = results[results[ID].notna()]
    value = pd.to_numeric(per_series[metric], errors="coerce")
    promised = pd.to_numeric(per_series[promised_col], errors="coerce")
    ok = (per_series["points"] >= min_points) & np.isfinite(value) & np.isfinite(promised)
    ok &= promised > 0
    eligible = per_series[ok].assign(value=value[ok], promised=promised[ok])
    if eligible.empty:
        return None
    newest = eligible.sort_values(["created_at", "release_id"], kind="stable").iloc[-1]
    chosen = eligible[eligible["release_id"] == newest["release_id"]]
    series = chosen[[ID, "value", "promised", "points"]].assign(
        ratio=chosen["value"] / chosen["promised"]
    )
    return _Judgement(
        release_id=str(newest["release_id"]),
        run_id=str(newest["run_id"]),
        metric=metric,
        realised=float(series["value"].mean()),
        promised=float(series["promised"].mean()),
        series=series.sort_values("ratio", ascending=False, kind="stable").reset_index(drop=True),
    )


def _findings(
    pipeline: str, judged: _Judgement, factor: float, series_share: float
) -> list[Finding]:
    found = []
    name = judged.metric.upper() if judged.metric != "smape" else "sMAPE"
    n = len(judged.series)
    points = int(judged.series["points"].sum())
    if judged.ratio > factor:
        found.append(
            Finding(
                fingerprint("drift", pipeline),
                "drift",
                "warning",
                f"realised {name} of pipeline {pipeline!r} is {judged.ratio:.1f}x what its "
                "backtest promised",
                f"release {judged.release_id}: realised {name} {judged.realised:.3g} over {n} "
                f"series and {points} actuals, against {judged.promised:.3g} promised by the "
                f"backtest of run {judged.run_id} (drift_factor {factor:g})",
            )
        )
    drifted = judged.series[judged.series["ratio"] > factor]
    if series_share < 1.0 and n and len(drifted) / n > series_share:
        worst = ", ".join(
            f"{uid} ({ratio:.1f}x)"
            for uid, ratio in zip(drifted[ID][:5], drifted["ratio"][:5], strict=True)
        )
        more = f" and {len(drifted) - 5} more" if len(drifted) > 5 else ""
        found.append(
            Finding(
                fingerprint("drift", pipeline, "series"),
                "drift",
                "warning",
                f"{len(drifted)} of {n} series of pipeline {pipeline!r} drifted beyond "
                f"{factor:g}x their promised {name}",
                f"release {judged.release_id}: worst {worst}{more}; more than the "
                f"{series_share:.0%} allowed (series_share)",
            )
        )
    return found


def drift_findings(
    pipeline: str,
    results: pd.DataFrame,
    factor: float,
    *,
    metric: str = "mase",
    min_points: int = 1,
    series_share: float = 0.2,
) -> list[Finding]:
    """Drift incidents from realised scores (the shape of :func:`stored_scores`).

    The newest release with judgeable series (``min_points`` actuals, a finite realised and a
    positive promised ``metric``) is judged: mean realised over mean promised across those
    series above ``factor`` gives ``drift:PIPELINE``; more than ``series_share`` of them each
    above ``factor`` gives ``drift:PIPELINE:series``. Both are warnings.
    """
    judged = _judge(results, metric, min_points)
    return [] if judged is None else _findings(pipeline, judged, factor, series_share)


def monitor(
    ws: Workspace, pipeline: str, cfg: PipelineConfig, *, now: datetime | None = None
) -> MonitorResult:
    """One monitoring pass: score what has new actuals, then judge drift on the stored scores
    of the newest ``max_releases`` releases. Disabled (``[monitor] enabled = false``): nothing."""
    mon = cfg.monitor
    if not mon.enabled:
        return MonitorResult(scored=_wide(pd.DataFrame(columns=_STORED)))
    scored = score_releases(ws, pipeline, cfg, now=now)
    results = stored_scores(ws, pipeline, limit=mon.max_releases)
    judged = _judge(results, cfg.backtest.metric, min_points(cfg))
    if judged is None:
        return MonitorResult(scored=scored)
    return MonitorResult(
        scored=scored,
        judged_release=judged.release_id,
        ratio=judged.ratio,
        findings=_findings(pipeline, judged, mon.drift_factor, mon.series_share),
        kinds=["drift"],
    )


# ----------------------------------------------------------------------------------------------
# The trend
# ----------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat() + "Z"
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def accuracy_trend(
    ws: Workspace, pipeline: str, limit: int = 30, *, metric: str = "mase"
) -> list[dict[str, Any]]:
    """Realised accuracy release by release, oldest first, for plots: per release
    ``release_id, run_id, created_at, scored_at, series, points, expected``, each metric
    (``mase, smape, rmsse, coverage_L``), ``promised_METRIC`` for each, and for ``metric`` (the
    pipeline's backtest metric) ``promised`` and ``ratio`` (realised over promised). Times are
    ISO 8601 UTC strings; missing values are None."""
    results = stored_scores(ws, pipeline, limit=limit)
    overall = results[results[ID].isna()].iloc[::-1]
    trend = []
    for _, row in overall.iterrows():
        item = {k: _plain(v) for k, v in row.items() if k not in ("pipeline", ID, "model")}
        realised, promised = item.get(metric), item.get(f"promised_{metric}")
        item["metric"] = metric
        item["promised"] = promised
        item["ratio"] = realised / promised if realised is not None and promised else None
        trend.append(item)
    return trend
