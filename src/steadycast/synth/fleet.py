"""``generate_fleet``: a directory of meter-like Parquet files, a pipeline and a ground truth.

Layout of ``out_dir``::

    data/part-00000.parquet ...   the readings (unique_id, ds, y), one file per chunk of series,
                                  then the extra deliveries (duplicated rows, late tails) as the
                                  following part numbers: lexical order is delivery order
    pipeline.toml                 a pipeline ready to ingest data/*.parquet
    ground_truth.parquet          one row per planted fault
    synth.json                    the parameters and counts, to reproduce or cite a fleet

Memory is bounded by ``rows_per_file``: one chunk of series is generated, faulted, cut into
rows and written before the next is drawn, and the extra deliveries are buffered up to the
same size. Each chunk draws from its own seeded stream, so the same arguments give the same
files byte for byte.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from steadycast.errors import UsageError
from steadycast.ops.resources import Meter
from steadycast.synth.faults import FAULTS, TRUTH_COLUMNS, FaultRates, Planted, plant
from steadycast.synth.load import draw_households, readings
from steadycast.synth.timeline import Timeline, build_timeline

DATA_DIR = "data"
PIPELINE_FILE = "pipeline.toml"
TRUTH_FILE = "ground_truth.parquet"
MANIFEST_FILE = "synth.json"

# Forecast settings written into pipeline.toml: a day ahead for sub-daily data, two weeks for
# daily data; seasons of a day and a week.
_SERIES_SETTINGS = {
    "30min": (48, [48, 336]),
    "1h": (24, [24, 168]),
    "1D": (14, [7]),
}


@dataclass(frozen=True)
class FleetSummary:
    """What ``generate_fleet`` wrote: counts, files in delivery order, and where things are."""

    out_dir: Path
    pipeline: Path
    ground_truth: Path
    files: tuple[Path, ...]  # every data file, in delivery (and lexical) order
    series: int
    days: int
    frequency: str
    timezone: str
    seed: int
    steps: int  # steps per series before faults
    rows: int  # rows written over all files
    rows_late: int
    rows_duplicate: int
    faults: dict[str, int] = field(default_factory=dict)  # series with each planted fault
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        for key in ("out_dir", "pipeline", "ground_truth"):
            out[key] = str(out[key])
        out["files"] = [str(f) for f in self.files]
        return out


def pipeline_toml(frequency: str, timezone: str, *, comment: str = "") -> str:
    """A pipeline for the generated files: canonical columns, the zone the times are in."""
    horizon, seasons = _SERIES_SETTINGS[frequency]
    head = f"# {comment}\n" if comment else ""
    return (
        f"{head}[source]\n"
        'id_column = "unique_id"\n'
        'time_column = "ds"\n'
        'value_column = "y"\n'
        f"timezone = {json.dumps(timezone)}\n"
        'time_format = ""\n'
        "\n[series]\n"
        f"frequency = {json.dumps(frequency)}\n"
        f"horizon = {horizon}\n"
        f"season_lengths = {json.dumps(seasons)}\n"
        "min_value = 0\n"
    )


def _series_names(lo: int, hi: int, width: int) -> np.ndarray:
    return np.char.add("M", np.char.zfill(np.arange(lo, hi).astype(str), width)).astype(object)


class _Writer:
    """Writes numbered part files atomically (temp file, then rename) and remembers them."""

    def __init__(self, data_dir: Path, width: int) -> None:
        self.data_dir = data_dir
        self.width = width
        self.files: list[Path] = []
        self.rows = 0

    def write(self, number: int, series: np.ndarray, ds: np.ndarray, y: np.ndarray) -> Path:
        """Write rows whose series are global indices ``series`` as ``part-NUMBER.parquet``."""
        uniq, codes = np.unique(series, return_inverse=True)
        names = np.char.add("M", np.char.zfill(uniq.astype(str), self.width))
        table = pa.table(
            {
                "unique_id": pa.DictionaryArray.from_arrays(
                    pa.array(codes.astype(np.int32)), pa.array(names.astype(object), pa.string())
                ),
                "ds": pa.array(ds.astype("datetime64[us]")),
                "y": pa.array(y.astype(np.float64)),
            }
        )
        path = self.data_dir / f"part-{number:05d}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp, compression="snappy")
        os.replace(tmp, path)
        self.files.append(path)
        self.rows += len(y)
        return path


@dataclass
class _Buffer:
    """Rows of one extra delivery kind (late tails or duplicated rows) waiting for their file."""

    series: list[np.ndarray] = field(default_factory=list)
    ds: list[np.ndarray] = field(default_factory=list)
    y: list[np.ndarray] = field(default_factory=list)
    truth: list[pd.DataFrame] = field(default_factory=list)
    rows: int = 0
    written: int = 0

    def add(self, series: np.ndarray, ds: np.ndarray, y: np.ndarray, truth: pd.DataFrame) -> None:
        self.series.append(series)
        self.ds.append(ds)
        self.y.append(y)
        self.truth.append(truth)
        self.rows += len(y)

    def flush(self, writer: _Writer, number: int, done: list[pd.DataFrame]) -> bool:
        """Write the buffered rows as one file; the truth rows learn the file's name."""
        if not self.rows:
            return False
        path = writer.write(
            number, np.concatenate(self.series), np.concatenate(self.ds), np.concatenate(self.y)
        )
        for frame in self.truth:
            frame["file"] = f"{DATA_DIR}/{path.name}"
            done.append(frame)
        self.written += self.rows
        self.series, self.ds, self.y, self.truth, self.rows = [], [], [], [], 0
        return True


def _cut(
    y: np.ndarray,
    mask: np.ndarray | None,
    tl: Timeline,
    extra: list[tuple[int, int, np.ndarray, float]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of a (series x steps) matrix where ``mask`` is true (all when None), in series
    then time order, with ``extra`` rows inserted after the step they follow."""
    n, total = y.shape
    if mask is None:
        flat = None
        series = np.repeat(np.arange(n, dtype=np.int64), total)
        ds = np.tile(tl.ds, n)
        values = y.reshape(-1)
    else:
        flat = np.flatnonzero(mask.reshape(-1))
        series, step = np.divmod(flat, total)
        ds = tl.ds[step]
        values = y.reshape(-1)[flat]
    if extra:
        keys = np.array([s * total + a + 1 for s, a, times, _ in extra for _t in times])
        pos = keys if flat is None else np.searchsorted(flat, keys)
        series = np.insert(series, pos, [s for s, _, times, _ in extra for _t in times])
        ds = np.insert(ds, pos, np.concatenate([times for _, _, times, _ in extra]))
        values = np.insert(values, pos, [v for _, _, times, v in extra for _t in times])
    return series, ds, values


def _chunk_rows(
    y: np.ndarray, planted: Planted, tl: Timeline
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Split a faulted chunk into on-time rows, late rows and duplicated rows."""
    keep, late = planted.keep, planted.late
    on_time_mask = keep if late is None or keep is None else keep & ~late
    in_late = [late is not None and bool(late[s, a]) for s, a, _, _ in planted.extra]
    on_time = _cut(
        y, on_time_mask, tl, [e for e, lt in zip(planted.extra, in_late, strict=True) if not lt]
    )
    late_rows = (
        _cut(y, late, tl, [e for e, lt in zip(planted.extra, in_late, strict=True) if lt])
        if late is not None
        else ()
    )
    dup_rows = _cut(y, planted.duplicate, tl, []) if planted.duplicate is not None else ()
    return on_time, late_rows, dup_rows


def _prepare_dir(out_dir: Path, overwrite: bool) -> Path:
    data = out_dir / DATA_DIR
    ours = [out_dir / PIPELINE_FILE, out_dir / TRUTH_FILE, out_dir / MANIFEST_FILE]
    old_parts = sorted(data.glob("part-*.parquet*")) if data.is_dir() else []
    existing = [p for p in ours if p.exists()] + old_parts
    if existing and not overwrite:
        raise UsageError(
            f"{out_dir} already holds a generated fleet ({existing[0].name} ...); "
            "choose an empty directory or pass overwrite=True (--overwrite)"
        )
    for path in existing:
        path.unlink()
    data.mkdir(parents=True, exist_ok=True)
    return data


def generate_fleet(
    out_dir: Path,
    *,
    series: int,
    days: int,
    frequency: str = "1h",
    seed: int = 0,
    faults: FaultRates | None = None,
    start: str = "2024-01-01",
    timezone: str = "UTC",
    rows_per_file: int = 5_000_000,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> FleetSummary:
    """Generate ``series`` meter-like series of ``days`` local days at ``frequency``.

    Writes the files described in the module docstring and returns their summary. Raises
    ``UsageError`` for arguments out of range and for a directory that already holds a fleet
    (unless ``overwrite``, which replaces only the files this function writes).
    """
    rates = FaultRates() if faults is None else faults
    _check_arguments(series, days, rows_per_file, timezone)
    out_dir = Path(out_dir)
    meter = Meter()
    with meter:
        tl = build_timeline(
            start, days, frequency, timezone, _rng(seed, 0)
        )  # validates frequency and start before anything is written
        data_dir = _prepare_dir(out_dir, overwrite)
        written = _write_data(data_dir, tl, series, seed, rates, rows_per_file, progress)
        ground_truth = _truth_frame(written.truth)
        truth_path = out_dir / TRUTH_FILE
        _write_atomically(ground_truth, truth_path)
        pipeline_path = out_dir / PIPELINE_FILE
        comment = (
            f"Generated by steadycast synth: {series} series x {days} days at "
            f"{frequency}, seed {seed}; ingest {DATA_DIR}/*.parquet in order."
        )
        pipeline_path.write_text(pipeline_toml(frequency, timezone, comment=comment), "utf-8")
    counts = ground_truth.groupby("fault")["unique_id"].nunique()
    summary = FleetSummary(
        out_dir=out_dir,
        pipeline=pipeline_path,
        ground_truth=truth_path,
        files=tuple(written.writer.files),
        series=series,
        days=days,
        frequency=frequency,
        timezone=timezone,
        seed=seed,
        steps=tl.n_steps,
        rows=written.writer.rows,
        rows_late=written.late.written,
        rows_duplicate=written.duplicate.written,
        faults={k: int(counts.get(k, 0)) for k in FAULTS},
        wall_s=meter.usage.wall_s,
        peak_rss_mb=meter.usage.peak_rss_mb,
    )
    _write_manifest(summary, start, rows_per_file, rates)
    return summary


def _write_manifest(
    summary: FleetSummary, start: str, rows_per_file: int, rates: FaultRates
) -> None:
    """``synth.json``: the parameters and counts, to reproduce or cite the fleet."""
    manifest = {"start": start, "rows_per_file": rows_per_file, "rates": rates.as_dict()}
    manifest.update(summary.as_dict())
    manifest["files"] = [f"{DATA_DIR}/{p.name}" for p in summary.files]
    path = summary.out_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _write_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write a Parquet file under a temporary name, then rename it into place."""
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _check_arguments(series: int, days: int, rows_per_file: int, timezone: str) -> None:
    """Raise ``UsageError`` for sizes out of range or a zone name that is not one."""
    if series < 1 or days < 1:
        raise UsageError(f"series ({series}) and days ({days}) must both be at least 1")
    if rows_per_file < 1:
        raise UsageError(f"rows_per_file ({rows_per_file}) must be at least 1")
    from steadycast.config import SourceConfig  # the one place zone names are validated

    try:
        SourceConfig(timezone=timezone)
    except ValueError:
        raise UsageError(
            f"{timezone!r} is not a time zone; use an IANA name such as UTC, Europe/London"
        ) from None


@dataclass
class _Written:
    """The data files written so far, the ground truth rows, and the extra-delivery buffers."""

    writer: _Writer
    truth: list[pd.DataFrame] = field(default_factory=list)
    late: _Buffer = field(default_factory=_Buffer)
    duplicate: _Buffer = field(default_factory=_Buffer)


def _write_data(
    data_dir: Path,
    tl: Timeline,
    series: int,
    seed: int,
    rates: FaultRates,
    rows_per_file: int,
    progress: Callable[[int, int], None] | None,
) -> _Written:
    """Draw, fault and write the fleet chunk by chunk, then the extra deliveries after them."""
    width = max(6, len(str(series - 1)))
    per_chunk = max(1, rows_per_file // max(1, tl.n_steps))
    n_chunks = math.ceil(series / per_chunk)
    written = _Written(_Writer(data_dir, width))
    next_extra = n_chunks
    for chunk in range(n_chunks):
        lo, hi = chunk * per_chunk, min(series, (chunk + 1) * per_chunk)
        _write_chunk(written, chunk, lo, hi, tl, _rng(seed, chunk + 1), rates)
        for buf in (written.duplicate, written.late):
            if buf.rows >= rows_per_file and buf.flush(written.writer, next_extra, written.truth):
                next_extra += 1
        if progress is not None:
            progress(hi, series)
    # Duplicates first: the late tails are the last news.
    for buf in (written.duplicate, written.late):
        if buf.flush(written.writer, next_extra, written.truth):
            next_extra += 1
    return written


def _write_chunk(
    written: _Written,
    chunk: int,
    lo: int,
    hi: int,
    tl: Timeline,
    rng: np.random.Generator,
    rates: FaultRates,
) -> None:
    """Series ``lo..hi``: readings, faults, the on-time file; late and duplicated rows buffered."""
    y = readings(draw_households(hi - lo, rng), tl, rng)
    ids = _series_names(lo, hi, written.writer.width)
    planted = plant(y, ids, tl, rates, rng)
    on_time, late_rows, dup_rows = _chunk_rows(y, planted, tl)
    path = written.writer.write(chunk, on_time[0] + lo, on_time[1], on_time[2])
    for frame in planted.truth:  # value faults arrive with the chunk's on-time file
        frame["file"] = f"{DATA_DIR}/{path.name}"
        written.truth.append(frame)
    for buf, rows, truth in (
        (written.duplicate, dup_rows, planted.duplicate_truth),
        (written.late, late_rows, planted.late_truth),
    ):
        if rows and truth is not None:
            buf.add(rows[0] + lo, rows[1], rows[2], truth)


def _rng(seed: int, stream: int) -> np.random.Generator:
    """Stream 0 draws the fleet's weather; stream k + 1 draws chunk k."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


def _truth_frame(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        out = pd.DataFrame({c: pd.Series(dtype=object) for c in TRUTH_COLUMNS})
        out["start"] = out["start"].astype("datetime64[us]")
        out["end"] = out["end"].astype("datetime64[us]")
        out["magnitude"] = out["magnitude"].astype(np.float64)
        out["rows"] = out["rows"].astype(np.int64)
        return out
    out = pd.concat(frames, ignore_index=True)
    order = pd.Categorical(out["fault"], categories=list(FAULTS), ordered=True)
    out = out.assign(_o=order).sort_values(["_o", "unique_id", "start"], kind="stable")
    out = out.drop(columns="_o").reset_index(drop=True)
    out["unique_id"] = out["unique_id"].astype(str)
    return out[list(TRUTH_COLUMNS)]
