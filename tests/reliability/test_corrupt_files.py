"""corrupt-files: mutated CSV, gzip and Parquet files, and a fuzzer on the parsing front.

The promise: each file is either ingested with parity (read = stored + quarantined, and the
store holds exactly that) or rejected with exit code 1 and a one-line message that names the
file and the problem; the process never dies (no traceback, no signal).

The corpus is run through ``steadycast.cli.main`` in a worker process, one call per file, as the
``steadycast`` command runs it (its exit code, its stderr); a worker that dies of a signal is
caught and restarted, and the file that killed it is counted as a crash. A sample of the corpus
also goes through the real ``steadycast`` command in its own process.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import random
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steadycast.errors import InputFileError
from steadycast.ingestion import REASONS, ingest_file
from steadycast.storage import store
from steadycast.workspace import Workspace
from tests.conftest import REPO
from tests.reliability.conftest import Record, size

FILES = size(50, 1000, env="STEADYCAST_CORRUPT_FILES")
FUZZ_EXAMPLES = size(40, 400, env="STEADYCAST_FUZZ_EXAMPLES")
CLI_SAMPLE = size(3, 25)
FILE_TIMEOUT_S = 60  # a file that takes longer than this counts as a hang

PIPELINE = (
    '[source]\nid_column="meter_id"\ntime_column="timestamp"\nvalue_column="kwh"\n'
    '[series]\nfrequency="1h"\nhorizon=24\nmin_value=0\n'
)
HEADER = "meter_id,timestamp,kwh"
IDS = ["m1", "Zürich-7", "東京-3", "café"]


def base_rows(n: int = 240) -> list[tuple[str, str, str]]:
    """Four series, hourly from 28 February 2024 (across the leap day), all good."""
    start = pd.Timestamp("2024-02-28")
    return [
        (
            IDS[i % len(IDS)],
            (start + pd.Timedelta(hours=i // len(IDS))).strftime("%Y-%m-%d %H:%M"),
            f"{i / 4}",
        )
        for i in range(n)
    ]


def base_csv(rows: list[tuple[str, str, str]] | None = None) -> str:
    return HEADER + "\n" + "\n".join(",".join(r) for r in (rows or base_rows())) + "\n"


def to_parquet(frame: pd.DataFrame, compression: str = "snappy") -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, compression=compression)
    return sink.getvalue()


def base_frame() -> pd.DataFrame:
    rows = base_rows()
    return pd.DataFrame(
        {
            "meter_id": [r[0] for r in rows],
            "timestamp": pd.to_datetime([r[1] for r in rows]),
            "kwh": [float(r[2]) for r in rows],
        }
    )


# ---------------------------------------------------------------------------------------------
# Mutations: each takes a seeded Random and returns (kind, bytes).


def flip_bits(data: bytes, rng: random.Random, most: int = 8) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, most)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def csv_bit_flips(rng: random.Random) -> bytes:
    return flip_bits(base_csv().encode(), rng)


def csv_junk_bytes(rng: random.Random) -> bytes:
    out = bytearray(base_csv().encode())
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def csv_truncated(rng: random.Random) -> bytes:
    data = base_csv().encode()
    return data[: rng.randrange(len(data))]


def wrong_encoding(rng: random.Random) -> bytes:
    encoding = rng.choice(
        ["latin-1", "cp1252", "utf-16", "utf-16-be", "utf-32", "shift_jis", "utf-8-sig", "cp500"]
    )
    return base_csv().encode(encoding, errors="replace")


def binary_junk(rng: random.Random) -> bytes:
    prefix = rng.choice(
        [b"", b"PAR1", b"\x1f\x8b\x08\x00", (HEADER + "\n").encode(), b"\xef\xbb\xbf"]
    )
    body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 4096)))
    suffix = rng.choice([b"", b"PAR1"])
    return prefix + body + suffix


def gzip_corrupt(rng: random.Random) -> bytes:
    text = base_csv()
    packed = gzip.compress(text.encode())
    how = rng.choice(
        ["flip", "truncate", "trailing junk", "crc", "latin-1 inside", "junk inside", "twice"]
    )
    if how == "flip":
        return packed[:10] + flip_bits(packed[10:], rng, most=4)
    if how == "truncate":
        return packed[: rng.randrange(2, len(packed))]
    if how == "trailing junk":
        return packed + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    if how == "crc":
        return packed[:-8] + bytes(rng.randrange(256) for _ in range(8))
    if how == "latin-1 inside":
        return gzip.compress(text.encode("latin-1", errors="replace"))
    if how == "junk inside":
        return gzip.compress(bytes(rng.randrange(256) for _ in range(rng.randint(1, 2048))))
    return gzip.compress(packed)


def parquet_bit_flips(rng: random.Random) -> bytes:
    data = to_parquet(base_frame(), rng.choice(["snappy", "gzip", "zstd", "none"]))
    return flip_bits(data, rng, most=6)


def parquet_truncated(rng: random.Random) -> bytes:
    data = to_parquet(base_frame(), rng.choice(["snappy", "none"]))
    return data[: rng.randrange(len(data))]


def parquet_odd_schema(rng: random.Random) -> bytes:
    frame = base_frame()
    how = rng.choice(
        [
            "bytes value",
            "list value",
            "struct id",
            "int time",
            "no rows",
            "all null",
            "missing column",
            "bool value",
            "huge string",
        ]
    )
    if how == "bytes value":
        frame["kwh"] = [str(v).encode() for v in frame["kwh"]]
    elif how == "list value":
        frame["kwh"] = [[v, v] for v in frame["kwh"]]
    elif how == "struct id":
        frame["meter_id"] = [{"a": i} for i in frame["meter_id"]]
    elif how == "int time":
        frame["timestamp"] = frame["timestamp"].astype("int64")
    elif how == "no rows":
        frame = frame.iloc[:0]
    elif how == "all null":
        frame["kwh"] = None
    elif how == "missing column":
        frame = frame.drop(columns=["timestamp"])
    elif how == "bool value":
        frame["kwh"] = frame["kwh"] > 10
    else:
        frame["meter_id"] = "x" * 100_000
    return to_parquet(frame)


def csv_structure(rng: random.Random) -> bytes:
    lines = base_csv().splitlines()
    how = rng.choice(
        [
            "join lines",
            "stray quote",
            "many fields",
            "semicolons",
            "cr only",
            "no header",
            "header again",
            "long field",
            "blank and space lines",
            "nul byte",
        ]
    )
    i = rng.randrange(1, len(lines))
    if how == "join lines":
        lines[i - 1 : i + 1] = [lines[i - 1] + lines[i]]
    elif how == "stray quote":
        pos = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:pos] + '"' + lines[i][pos:]
    elif how == "many fields":
        lines[i] += "," * rng.randint(1, 500)
    elif how == "semicolons":
        lines = [line.replace(",", ";") for line in lines]
    elif how == "cr only":
        return ("\r".join(lines) + "\r").encode()
    elif how == "no header":
        lines = lines[1:]
    elif how == "header again":
        lines.insert(i, HEADER)
    elif how == "long field":
        lines[i] = "x" * rng.choice([10_000, 3_000_000]) + lines[i]
    elif how == "blank and space lines":
        lines.insert(i, rng.choice(["", " ", "\t", "   ", ",,", " , , "]))
    else:
        lines[i] = lines[i][:3] + "\x00" + lines[i][3:]
    return ("\n".join(lines) + "\n").encode()


MUTATIONS: list[Callable[[random.Random], bytes]] = [
    csv_bit_flips,
    csv_junk_bytes,
    csv_truncated,
    wrong_encoding,
    binary_junk,
    gzip_corrupt,
    parquet_bit_flips,
    parquet_truncated,
    parquet_odd_schema,
    csv_structure,
]


def corpus(root: Path, count: int) -> list[tuple[str, Path]]:
    """``count`` mutated files, every kind in turn, each from its own seed (reproducible)."""
    root.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        mutate = MUTATIONS[i % len(MUTATIONS)]
        path = root / f"f{i:04d}.{mutate.__name__}"
        path.write_bytes(mutate(random.Random(i)))
        files.append((mutate.__name__, path))
    return files


# ---------------------------------------------------------------------------------------------
# The worker: ``python -m tests.reliability.test_corrupt_files WORKSPACE JOBS RESULTS``.


def _worker(workspace: str, jobs_file: str, results_file: str) -> None:
    """Ingest each job's file into its own pipeline through the CLI's entry point; append one
    JSON line per file to ``results_file`` (a line is missing only if the process died)."""
    from steadycast import cli

    jobs = json.loads(Path(jobs_file).read_text())
    with Path(results_file).open("a") as results:
        for job in jobs:
            out, err = io.StringIO(), io.StringIO()
            trace = None
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = cli.main(
                        ["ingest", job["pipeline"], job["path"], "-w", workspace, "--json"]
                    )
                except BaseException:  # what the real command would print as a traceback
                    code = None
                    trace = traceback.format_exc()
            record = {
                **job,
                "code": code,
                "stdout": out.getvalue(),
                "stderr": err.getvalue(),
                "trace": trace,
            }
            results.write(json.dumps(record) + "\n")
            results.flush()


@dataclass
class Outcome:
    kind: str
    path: str
    verdict: str  # ingested | rejected | crash | hang | no reason
    detail: str = ""


def run_worker(ws: Workspace, jobs_file: Path, results_file: Path) -> tuple[bool, str]:
    """Run one worker over the jobs; a worker that answers nothing for FILE_TIMEOUT_S is
    killed (the file it was on counts as a hang). Returns (ended cleanly, how it ended)."""
    command = [sys.executable, "-m", "tests.reliability.test_corrupt_files"]
    log = jobs_file.with_suffix(".stderr")
    with log.open("w") as stderr:
        worker = subprocess.Popen(
            [*command, str(ws.root), str(jobs_file), str(results_file)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        answered, last = -1, time.monotonic()
        while worker.poll() is None:
            time.sleep(0.1)
            size = results_file.stat().st_size if results_file.exists() else 0
            if size != answered:
                answered, last = size, time.monotonic()
            elif time.monotonic() - last > FILE_TIMEOUT_S:
                worker.kill()
                worker.wait()
                return False, f"hang: no answer for {FILE_TIMEOUT_S} s"
    said = log.read_text()[-300:]
    return worker.returncode == 0, f"worker died (exit {worker.returncode}): {said}"


def run_corpus(ws: Workspace, files: list[tuple[str, Path]], work: Path) -> list[Outcome]:
    jobs = [
        {"index": i, "kind": kind, "path": str(path), "pipeline": f"f{i:04d}"}
        for i, (kind, path) in enumerate(files)
    ]
    for job in jobs:
        (ws.pipelines_dir / f"{job['pipeline']}.toml").write_text(PIPELINE)
    results_file = work / "results.jsonl"
    done: dict[int, dict] = {}
    died: dict[int, str] = {}
    todo = jobs
    for _ in range(len(jobs) + 1):  # at most one restart per file
        if not todo:
            break
        jobs_file = work / "jobs.json"
        jobs_file.write_text(json.dumps(todo))
        clean, ended = run_worker(ws, jobs_file, results_file)
        for line in results_file.read_text().splitlines() if results_file.exists() else []:
            record = json.loads(line)
            done[record["index"]] = record
        left = [job for job in todo if job["index"] not in done]
        if left and not clean:
            died[left[0]["index"]] = ended  # the file being ingested when the worker died
            left = left[1:]
        elif left:
            pytest.fail(f"worker exited cleanly without answering for {len(left)} files")
        todo = left
    outcomes = []
    for job in jobs:
        if job["index"] in died:
            outcomes.append(Outcome(job["kind"], job["path"], "crash", died[job["index"]]))
        else:
            outcomes.append(classify(done[job["index"]]))
    return outcomes


def classify(record: dict) -> Outcome:
    kind, path = record["kind"], record["path"]
    if record["trace"] is not None:
        return Outcome(kind, path, "crash", record["trace"].strip().splitlines()[-1])
    stderr = record["stderr"]
    if record["code"] == 0:
        batches = json.loads(record["stdout"])["batches"]
        if len(batches) != 1 or batches[0]["status"] != "ingested":
            return Outcome(kind, path, "no reason", f"exit 0 but {batches}")
        b = batches[0]
        if b["rows_read"] != b["rows_stored"] + b["rows_quarantined"]:
            return Outcome(kind, path, "no reason", f"parity broken: {b}")
        return Outcome(kind, path, "ingested", json.dumps(b))
    # Rejected: exit 1 and one line "error: PATH: problem" (the problem not empty).
    lines = stderr.strip().splitlines()
    prefix = f"error: {path}: "
    named = len(lines) == 1 and lines[0].startswith(prefix) and len(lines[0]) > len(prefix) + 5
    if record["code"] == 1 and named and "Traceback" not in stderr:
        return Outcome(kind, path, "rejected", lines[0][len(prefix) :])
    return Outcome(kind, path, "no reason", f"exit {record['code']}: {stderr[-300:]}")


def store_problems(ws: Workspace, outcomes: list[Outcome]) -> list[str]:
    """What the store holds for each ingested file must be what the command reported."""
    problems = []
    with store.reading(ws.store_path) as con:
        for i, o in enumerate(outcomes):
            pipeline = f"f{i:04d}"
            ledger = con.execute(
                "SELECT batch_id, rows_read, rows_stored, rows_quarantined FROM batches WHERE pipeline = ?",
                [pipeline],
            ).fetchall()
            stored = con.execute(
                "SELECT count(*) FROM observations WHERE pipeline = ?", [pipeline]
            ).fetchone()
            reasons = dict(
                con.execute(
                    "SELECT reason, count(*) FROM quarantine WHERE pipeline = ? GROUP BY 1",
                    [pipeline],
                ).fetchall()
            )
            if o.verdict != "ingested":
                if ledger or (stored and stored[0]) or reasons:
                    problems.append(f"{o.path}: not ingested, yet the store holds rows of it")
                continue
            b = json.loads(o.detail)
            expected = [(b["batch_id"], b["rows_read"], b["rows_stored"], b["rows_quarantined"])]
            if [tuple(row) for row in ledger] != expected:
                problems.append(f"{o.path}: ledger {ledger} but the command said {expected}")
            if stored != (b["rows_stored"],) or sum(reasons.values()) != b["rows_quarantined"]:
                problems.append(f"{o.path}: {stored} stored and {reasons} quarantined, said {b}")
            if set(reasons) - set(REASONS):
                problems.append(f"{o.path}: quarantined with unknown reasons {set(reasons)}")
    return problems


@pytest.mark.timeout(max(600, FILES * 3))
def test_mutated_files_are_ingested_with_parity_or_rejected_naming_the_file(
    tmp_path: Path, figure: Record
) -> None:
    ws = Workspace.init(tmp_path / "ws")
    files = corpus(tmp_path / "corpus", FILES)
    outcomes = run_corpus(ws, files, tmp_path)
    problems = store_problems(ws, outcomes)

    # A sample through the real command, in its own process: exit code, stderr, no signal.
    rng = random.Random(7)
    for i in sorted(rng.sample(range(len(files)), min(CLI_SAMPLE, len(files)))):
        kind, path = files[i]
        pipeline = f"cli{i:04d}"
        (ws.pipelines_dir / f"{pipeline}.toml").write_text(PIPELINE)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "steadycast.cli",
                "ingest",
                pipeline,
                str(path),
                "-w",
                str(ws.root),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=FILE_TIMEOUT_S,
        )
        record = {
            "kind": kind,
            "path": str(path),
            "code": done.returncode,
            "stdout": done.stdout,
            "stderr": done.stderr,
            "trace": done.stderr if "Traceback" in done.stderr else None,
        }
        if done.returncode < 0:
            problems.append(f"{path}: the steadycast command died of signal {-done.returncode}")
            continue
        got = classify(record)
        if got.verdict != outcomes[i].verdict:
            problems.append(
                f"{path}: the command gave {got.verdict}, in-process {outcomes[i].verdict}"
            )

    crashes = [o for o in outcomes if o.verdict in ("crash", "hang")]
    unreasoned = [o for o in outcomes if o.verdict == "no reason"]
    verdicts = Counter(o.verdict for o in outcomes)
    by_kind = {
        kind: dict(Counter(o.verdict for o in outcomes if o.kind == kind))
        for kind in sorted({o.kind for o in outcomes})
    }
    figure(
        "corrupt-files",
        violations=len(crashes) + len(unreasoned) + len(problems),
        value=(
            f"{len(files):,} mutated files: {verdicts['ingested']} ingested with parity, "
            f"{verdicts['rejected']} rejected naming the file; {len(crashes)} crashes, "
            f"{len(unreasoned)} without a reason"
        ),
        verdicts=dict(verdicts),
        by_kind=by_kind,
        store_problems=problems[:5],
        crashes=[f"{o.path}: {o.detail}" for o in crashes[:5]],
        without_reason=[f"{o.path}: {o.detail}" for o in unreasoned[:5]],
    )
    assert not crashes, [f"{o.path}: {o.detail}" for o in crashes[:5]]
    assert not unreasoned, [f"{o.path}: {o.detail}" for o in unreasoned[:5]]
    assert not problems, problems[:5]


def corrupt_parquet_pages() -> bytes:
    """A Parquet file with an intact footer and a garbled page of values of the time column
    (its dictionary page: the first thing read from it)."""
    data = bytearray(to_parquet(base_frame(), "gzip"))
    column = pq.ParquetFile(io.BytesIO(bytes(data))).metadata.row_group(0).column(1)
    first = column.dictionary_page_offset or column.data_page_offset
    garbled = first + column.total_compressed_size // 3
    data[garbled : garbled + 8] = b"\xff" * 8
    return bytes(data)


def test_parquet_with_corrupt_data_pages_is_rejected_naming_the_file(
    workspace: Workspace, make_pipeline: Callable[..., str], tmp_path: Path
) -> None:
    make_pipeline()
    path = tmp_path / "pages.parquet"
    path.write_bytes(corrupt_parquet_pages())
    with pytest.raises(InputFileError, match=rf"^{path}: cannot be read as parquet"):
        ingest_file(workspace, workspace.pipeline("meters"), path)


def csv_like_text() -> st.SearchStrategy[str]:
    """Text near a real CSV: the header (sometimes mangled), lines of fields from a palette of
    good and bad tokens, odd separators and line ends."""
    token = st.one_of(
        st.sampled_from(
            [
                "m1",
                "東京",
                "",
                " ",
                '"',
                '""',
                "2024-01-01 00:00",
                "2024-02-30 00:00",
                "1",
                "-1",
                "nan",
                "inf",
                "1e308",
                "NULL",
                "\t",
                ";",
                "'); DROP TABLE observations;--",
            ]
        ),
        st.text(max_size=12),
    )
    line = st.lists(token, min_size=0, max_size=5).map(",".join)
    header = st.sampled_from(
        [HEADER, HEADER.upper(), "meter_id;timestamp;kwh", "", HEADER + ",extra"]
    )
    ending = st.sampled_from(["\n", "\r\n", "\r"])
    return st.tuples(header, st.lists(line, max_size=30), ending).map(
        lambda t: t[2].join([t[0], *t[1]]) + t[2]
    )


@pytest.mark.timeout(max(600, FUZZ_EXAMPLES * 4))
def test_fuzzer_on_the_parsing_front(tmp_path: Path, figure: Record) -> None:
    """Arbitrary bytes and CSV-like text: ingested with parity, or InputFileError naming the
    file. Anything else (another exception, a wrong count) fails and is shrunk by hypothesis."""
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "fuzz.toml").write_text(PIPELINE)
    cfg = ws.pipeline("fuzz")
    seen: Counter[str] = Counter()
    counter = iter(range(10**9))

    def check(data: bytes) -> None:
        path = tmp_path / f"fuzz{next(counter)}.csv"
        path.write_bytes(data)
        try:
            batch = ingest_file(ws, cfg, path)
        except InputFileError as exc:
            assert str(exc).startswith(f"{path}: ") and exc.problem.strip(), str(exc)
            seen["rejected"] += 1
            return
        finally:
            path.unlink()
        assert batch.rows_read == batch.rows_stored + batch.rows_quarantined, batch
        assert set(batch.quarantine_reasons) <= set(REASONS), batch
        seen[batch.status] += 1

    fuzz = settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )

    @fuzz
    @given(st.binary(max_size=4096))
    def arbitrary_bytes(data: bytes) -> None:
        check(data)

    @fuzz
    @given(csv_like_text(), st.sampled_from(["utf-8", "gzip"]))
    def csv_like(text: str, packing: str) -> None:
        raw = text.encode()
        check(gzip.compress(raw) if packing == "gzip" else raw)

    finished = False
    try:
        arbitrary_bytes()
        csv_like()
        finished = True
    finally:
        figure(
            "corrupt-files",
            violations=0 if finished else 1,
            value=(
                f"fuzzer: {2 * FUZZ_EXAMPLES} inputs (arbitrary bytes, CSV-like text), "
                + ("0 crashes" if finished else "a failing input (see the test output)")
            ),
            outcomes=dict(seen),
        )


if __name__ == "__main__":
    _worker(*sys.argv[1:4])
