"""One good model and many bad ones, each failing in exactly one way (see README.md)."""

from __future__ import annotations

import ctypes
import os
import sys
import time
from typing import ClassVar

import numpy as np
import pandas as pd

from steadycast.models.base import Capabilities, ForecastTask
from steadycast_chaos_models.pattern import planted_pattern

_PLAIN = Capabilities(intervals=False, min_history=1, cost="fast")


def future_frame(history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
    """``unique_id, ds`` for the horizon after each series' last timestamp."""
    last = history.groupby("unique_id", sort=False)["ds"].max()
    frames = [
        pd.DataFrame(
            {
                "unique_id": uid,
                "ds": pd.date_range(end, periods=task.horizon + 1, freq=task.frequency)[1:],
            }
        )
        for uid, end in last.items()
    ]
    return pd.concat(frames, ignore_index=True)


def last_value(history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
    """A correct naive forecast, for the models whose fault is elsewhere."""
    out = future_frame(history, task)
    last = history.groupby("unique_id", sort=False)["y"].last()
    out["yhat"] = out["unique_id"].map(last).astype(float)
    return out


class ChaosOracle:
    """Fits ``a + b * planted_pattern(ds)`` per series: perfect on planted series."""

    name: ClassVar[str] = "ChaosOracle"
    capabilities: ClassVar[Capabilities] = Capabilities(intervals=False, min_history=2, cost="fast")

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        out = future_frame(history, task)
        coefs = {}
        for uid, part in history.groupby("unique_id", sort=False):
            x = planted_pattern(part["ds"])
            design = np.column_stack([np.ones_like(x), x])
            coefs[uid] = np.linalg.lstsq(design, part["y"].to_numpy(float), rcond=None)[0]
        a = out["unique_id"].map(lambda u: coefs[u][0]).to_numpy(float)
        b = out["unique_id"].map(lambda u: coefs[u][1]).to_numpy(float)
        out["yhat"] = a + b * planted_pattern(out["ds"])
        return out


class _Bad:
    capabilities: ClassVar[Capabilities] = _PLAIN


class ChaosHang(_Bad):
    name: ClassVar[str] = "ChaosHang"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        time.sleep(3600)
        return last_value(history, task)


class ChaosSpin(_Bad):
    name: ClassVar[str] = "ChaosSpin"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        n = 0
        while n >= 0:
            n += 1
        return last_value(history, task)


class ChaosHog(_Bad):
    name: ClassVar[str] = "ChaosHog"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        hog = np.ones(10 * 2**30 // 8)  # 10 GB, touched
        history = history.assign(hog=float(hog[0]))
        return last_value(history, task)


class ChaosSegfault(_Bad):
    name: ClassVar[str] = "ChaosSegfault"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        ctypes.string_at(0)  # reads address 0: SIGSEGV
        return last_value(history, task)


class ChaosExit(_Bad):
    name: ClassVar[str] = "ChaosExit"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        sys.exit(3)


class ChaosPrinter(_Bad):
    """Prints about 50 MB to stdout and 10 MB to stderr, then forecasts correctly."""

    name: ClassVar[str] = "ChaosPrinter"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        line = "x" * 1023
        for _ in range(50 * 1024):
            print(line)
        for _ in range(10 * 1024):
            print(line, file=sys.stderr)
        return last_value(history, task)


class ChaosRaise(_Bad):
    name: ClassVar[str] = "ChaosRaise"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        raise ValueError("chaos: the matrix is singular")


class ChaosNaN(_Bad):
    name: ClassVar[str] = "ChaosNaN"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        return last_value(history, task).assign(yhat=np.nan)


class ChaosShort(_Bad):
    name: ClassVar[str] = "ChaosShort"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        out = last_value(history, task)
        return out.groupby("unique_id", sort=False).head(task.horizon - 1)


class ChaosWrongIds(_Bad):
    name: ClassVar[str] = "ChaosWrongIds"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        out = last_value(history, task)
        return out.assign(unique_id=out["unique_id"].astype(str) + "_x")


class ChaosNotAFrame(_Bad):
    name: ClassVar[str] = "ChaosNotAFrame"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        return [1.0, 2.0]  # type: ignore[return-value]


class ChaosFork(_Bad):
    """Forks a child that sleeps forever and waits for it: only a group kill ends both."""

    name: ClassVar[str] = "ChaosFork"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        pid = os.fork()
        if pid == 0:
            while True:
                time.sleep(3600)
        os.waitpid(pid, 0)
        return last_value(history, task)


class ChaosOrphan(_Bad):
    """Leaves a sleeper in a new session (double fork) and returns a correct forecast."""

    name: ClassVar[str] = "ChaosOrphan"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        pid = os.fork()
        if pid == 0:
            os.setsid()
            if os.fork() == 0:
                while True:
                    time.sleep(3600)
            os._exit(0)
        os.waitpid(pid, 0)
        return last_value(history, task)


class ChaosEscape(_Bad):
    """Leaves a sleeper in a new session (double fork), then hangs: the deadline must end both."""

    name: ClassVar[str] = "ChaosEscape"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        ChaosOrphan().forecast(history, task)
        time.sleep(3600)
        return last_value(history, task)


class ChaosShadow(_Bad):
    """Claims a built-in's name; the registry must refuse it."""

    name: ClassVar[str] = "SeasonalNaive"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        return last_value(history, task)


class ChaosBurn(_Bad):
    """Burns 2 CPU-seconds (process time, not wall time), then forecasts correctly: for
    checking that resource accounting charges a model what it really used."""

    name: ClassVar[str] = "ChaosBurn"
    CPU_SECONDS: ClassVar[float] = 2.0

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        until = time.process_time() + self.CPU_SECONDS
        x = 0
        while time.process_time() < until:
            x += 1
        return last_value(history, task)


class ChaosAlloc(_Bad):
    """Holds 500 MB (touched, so resident) while it forecasts, then releases it."""

    name: ClassVar[str] = "ChaosAlloc"
    MEGABYTES: ClassVar[int] = 500

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        block = np.ones(self.MEGABYTES * 1024 * 1024 // 8)
        out = last_value(history, task)
        del block
        return out


class ChaosLinear(_Bad):
    """An honest straight-line extrapolation per series: on a falling series it forecasts
    below zero, which the gate must catch for a series that was never negative."""

    name: ClassVar[str] = "ChaosLinear"

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        out = future_frame(history, task)
        fits = {}
        for uid, group in history.groupby("unique_id", sort=False):
            t = np.arange(len(group), dtype=float)
            slope, intercept = np.polyfit(t, group["y"].to_numpy(dtype=float), 1)
            fits[uid] = (slope, intercept, len(group))
        step = out.groupby("unique_id").cumcount().to_numpy()
        params = np.array([fits[u] for u in out["unique_id"]])
        out["yhat"] = params[:, 1] + params[:, 0] * (params[:, 2] + step)
        return out
