"""Small workspaces with recorded runs, for the report, metrics and hogs tests.

``recorded_workspace`` ingests a real CSV (so quarantine and observations are real) and then
records a run the way ``run.py`` does (control plane rows, backtest scores, provenance, a
release), in about a second instead of the ten a real run takes on a shared 2-core machine. Ids
and reasons carry quotes and HTML on purpose, so every consumer is tested for escaping.
``real_run_workspace`` makes a real run, for the slow end-to-end checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steadycast.ingestion.batch import ingest
from steadycast.storage import control, releases, store
from steadycast.workspace import Workspace

PIPELINE = """\
[source]
id_column = "meter_id"
time_column = "timestamp"
value_column = "kwh"

[series]
frequency = "1h"
horizon = 12
season_lengths = [24]
min_value = 0

[models]
candidates = ["Naive", "SeasonalNaive", "HistoricAverage", "SES"]

[forecast]
workers = 1
"""

NASTY_ID = "m\"<b>bold</b>'&amp;"
NASTY_RUN = "meters-r\"<img src=x onerror=alert(1)>'&"
SERIES = [NASTY_ID, *(f"m{i}" for i in range(1, 9))]
MODELS = ["Naive", "SeasonalNaive", "HistoricAverage", "SES"]
HORIZON = 12
START = pd.Timestamp("2024-03-01")
DAYS = 10


def fleet_csv(path: Path, series: list[str], days: int = DAYS, seed: int = 0) -> Path:
    """Hourly daily-seasonal series, plus two bad rows (negative, not a number) to quarantine."""
    rng = np.random.default_rng(seed)
    hours = pd.date_range(START, periods=24 * days, freq="1h")
    frames = []
    for i, uid in enumerate(series):
        daily = 1.0 + 0.5 * np.sin(2 * np.pi * (hours.hour.to_numpy() + i) / 24)
        values = np.maximum(0, daily * (1 + i) + rng.normal(0, 0.05, len(hours)))
        frames.append(
            pd.DataFrame(
                {"meter_id": uid, "timestamp": hours.strftime("%Y-%m-%d %H:%M"), "kwh": values}
            )
        )
    frame = pd.concat(frames, ignore_index=True).astype({"kwh": object})
    frame.loc[3, "kwh"] = -5.0
    frame.loc[7, "kwh"] = "n/a"
    frame.to_csv(path, index=False)
    return path


def record_run(
    ws: Workspace,
    pipeline: str,
    run_id: str,
    *,
    status: str = "published",
    started_at: str | None = None,
    cpu_scale: float = 1.0,
    peak_mb: float = 200.0,
    gate: list[dict[str, Any]] | None = None,
    findings: list[dict[str, Any]] | None = None,
    fallback: int = 1,
) -> None:
    """Record a finished run in the control plane only (runs, stages, model usage)."""
    started = started_at or control.utcnow()
    detail: dict[str, Any] = {}
    if gate is not None:
        detail["gate"] = gate
    if findings is not None:
        detail["checks"] = findings
    with control.connect(ws.control_path) as con:
        con.execute(
            "INSERT INTO runs (run_id, pipeline, status, started_at, finished_at, engine, "
            "config_sha256, release_id, series, fallback_series, pid, host, detail) "
            "VALUES (?, ?, ?, ?, ?, 'local', 'abc', ?, ?, ?, 1, 'test', ?)",
            (
                run_id,
                pipeline,
                status,
                started,
                control.utcnow(),
                run_id if status == "published" else None,
                len(SERIES),
                fallback,
                json.dumps(detail) if detail else None,
            ),
        )
        for seq, (name, wall, cpu, rows) in enumerate(
            [
                ("snapshot", 0.1, 0.05, 2160),
                ("forecast", 4.0, 3.0, 2160),
                ("publish", 0.1, 0.02, 108),
            ],
            start=1,
        ):
            con.execute(
                "INSERT INTO stages (run_id, name, seq, status, started_at, wall_s, cpu_s, "
                "peak_rss_mb, rows_in, rows_out, rows_rejected, series_in, series_out, detail) "
                "VALUES (?, ?, ?, 'ok', ?, ?, ?, ?, ?, ?, 0, 9, 9, '{}')",
                (
                    run_id,
                    name,
                    seq,
                    started,
                    wall * cpu_scale,
                    cpu * cpu_scale,
                    peak_mb + seq,
                    rows,
                    rows if name != "forecast" else 108,
                ),
            )
        for k, model in enumerate(MODELS):
            con.execute(
                "INSERT INTO model_usage VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, model, 3, int(k == 3), (k + 1) * 0.5 * cpu_scale, peak_mb + 10 * k),
            )


def record_outputs(ws: Workspace, pipeline: str, run_id: str) -> None:
    """Backtest scores, provenance and a current release for a recorded run."""
    rows, prov, fcs = [], [], []
    last = START + pd.Timedelta(hours=24 * DAYS - 1)
    steps = pd.date_range(last + pd.Timedelta(hours=1), periods=HORIZON, freq="1h")
    for i, uid in enumerate(SERIES):
        for k, model in enumerate(MODELS):
            for window in (0, 1):
                for metric, value in (("mase", 0.5 + k + i / 10), ("smape", 10.0 + k)):
                    rows.append((pipeline, run_id, uid, model, window, "ok", metric, value))
        fallback = i == 2
        prov.append(
            {
                "unique_id": uid,
                "model": "SeasonalNaive",
                "source": "fallback" if fallback else "selected",
                "fallback_reason": "model 'SES' failed: <boom>" if fallback else None,
                "metric": "mase",
                "backtest_score": None if fallback else 1.5 + i / 10,
                "selection_reason": "best of 4",
                "interval_source": "model",
            }
        )
        base = 1.0 + i
        fcs.append(
            pd.DataFrame(
                {
                    "unique_id": uid,
                    "ds": steps,
                    "yhat": base,
                    "model": "SeasonalNaive",
                    "yhat_lo_80": base - 0.2,
                    "yhat_hi_80": base + 0.2,
                    "yhat_lo_95": base - 0.4,
                    "yhat_hi_95": base + 0.4,
                }
            )
        )
    scores = pd.DataFrame(
        rows,
        columns=["pipeline", "run_id", "unique_id", "model", "window", "status", "metric", "value"],
    )
    provenance = pd.DataFrame(prov)
    with store.writing(ws.store_path) as con:
        con.execute("BEGIN TRANSACTION")
        con.register("scores_df", scores)
        con.execute("INSERT INTO backtest_scores SELECT * FROM scores_df")
        stored = provenance.assign(pipeline=pipeline, run_id=run_id)
        con.register("prov_df", stored)
        con.execute(
            "INSERT INTO series_provenance SELECT pipeline, run_id, unique_id, model, source, "
            "fallback_reason, metric, backtest_score, selection_reason, interval_source, "
            "'full' FROM prov_df"
        )
        con.execute("COMMIT")
    release = releases.write_release(
        ws.releases_dir,
        pipeline,
        run_id,
        pd.concat(fcs, ignore_index=True),
        {"levels": [80, 95], "frequency": "1h", "horizon": HORIZON, "fallback_series": 1},
        extras={"provenance": provenance},
    )
    releases.make_current(ws.releases_dir, pipeline, release.release_id)


GATE = [
    {"check": "fallback_share", "passed": True, "detail": "1 of 9 series on fallback (11%)"},
    {
        "check": "total_jump",
        "passed": False,
        "blocking": False,
        "detail": 'total moved 40% against <release> "r1"',
        "value": 0.4,
        "limit": 0.25,
    },
]
FINDINGS = [
    {
        "check": "flat_line",
        "passed": False,
        "severity": "warning",
        "unique_id": NASTY_ID,
        "sentence": "flat for 30 h <stuck meter?>",
    },
    {"check": "spikes", "passed": True, "severity": "info", "unique_id": "m1", "sentence": "ok"},
]


def recorded_workspace(root: Path) -> tuple[Workspace, str]:
    """A workspace with one real ingest and one recorded, published run (id with HTML in it)."""
    ws = Workspace.init(root / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE)
    ingest(ws, "meters", [fleet_csv(root / "fleet.csv", SERIES)])
    record_run(ws, "meters", NASTY_RUN, gate=GATE, findings=FINDINGS)
    record_outputs(ws, "meters", NASTY_RUN)
    return ws, NASTY_RUN


def real_run_workspace(root: Path) -> tuple[Workspace, str]:
    """A workspace with one real, published run of a tiny fleet (about 10 s)."""
    from steadycast.pipeline.run import run_pipeline

    ws = Workspace.init(root / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE)
    ingest(ws, "meters", [fleet_csv(root / "fleet.csv", [f"m{i}" for i in range(5)])])
    result = run_pipeline(ws, "meters")
    if result.status != "published":
        raise RuntimeError(f"the fixture run did not publish: {result.error}")
    return ws, result.run_id
