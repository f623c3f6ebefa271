"""Sources: folders, globs, stdin, hive-partitioned Parquet datasets, object URLs and the
pipeline's configured ``[source]``, each through the real command and through
``steadycast.ingest``: every file its own batch, named as the user knows it, replayed as a skip."""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import steadycast
from steadycast.errors import ConfigError, InputFileError, UsageError
from steadycast.ingestion import quarantined
from steadycast.storage import store
from steadycast.workspace import Workspace
from tests.conftest import run_cli
from tests.pipelines import pipeline_toml

HEADER = "meter_id,timestamp,kwh\n"


def csv_text(rows: list[str], header: str = HEADER) -> str:
    return header + "\n".join(rows) + "\n"


def hours(meter: str, start: int, n: int, value: float = 1.0) -> list[str]:
    return [f"{meter},2024-01-01 {h:02d}:00,{value + h}" for h in range(start, start + n)]


def observed(ws: Workspace, pipeline: str) -> pd.DataFrame:
    with store.reading(ws.store_path) as con:
        return con.execute(
            "SELECT unique_id, ds, y FROM observations WHERE pipeline = ? ORDER BY unique_id, ds",
            [pipeline],
        ).fetchdf()


def ingest_json(ws: Workspace, *args: str, stdin: bytes | None = None) -> tuple[int, dict, str]:
    """``steadycast ingest ... --json`` in a child process: exit code, document, stderr."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "steadycast.cli", "ingest", *args, "-w", str(ws.root), "--json"],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=600,
    )
    doc = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, doc, done.stderr.decode()


def make(ws: Workspace, name: str, **source: str) -> str:
    """pipelines/NAME.toml with the test's columns, and ``source`` keys added to [source]."""
    keys = {k: v for k, v in source.items() if k in ("path", "query", "database")}
    text = pipeline_toml(max_value=1000, **{k: v for k, v in source.items() if k not in keys})
    added = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    (ws.pipelines_dir / f"{name}.toml").write_text(
        text.replace("[source]\n", "[source]\n" + added, 1), encoding="utf-8"
    )
    return name


def meter_folder(root: Path) -> Path:
    """A folder of three readable files (CSV, gzip CSV, Parquet), a note and a subfolder."""
    folder = root / "meters"
    (folder / "older").mkdir(parents=True)
    (folder / "a.csv").write_text(csv_text(hours("a", 0, 3)), encoding="utf-8")
    with gzip.open(folder / "b.csv.gz", "wt", encoding="utf-8") as out:
        out.write(csv_text(hours("b", 0, 3)))
    frame = pd.DataFrame(
        {"meter_id": ["c"] * 2, "timestamp": ["2024-01-01 00:00", "2024-01-01 01:00"]}
    ).assign(kwh=[1.0, 2.0])
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / "c.parquet")
    (folder / "README.md").write_text("not data\n", encoding="utf-8")
    (folder / "_SUCCESS").write_text("", encoding="utf-8")
    (folder / "older" / "z.csv").write_text(csv_text(hours("z", 0, 2)), encoding="utf-8")
    return folder


def test_a_folder_is_each_data_file_a_batch(workspace: Workspace, tmp_path: Path) -> None:
    folder = meter_folder(tmp_path)
    make(workspace, "cli")
    code, doc, err = ingest_json(workspace, "cli", str(folder))
    assert code == 0, err
    expected = [str(folder / n) for n in ("a.csv", "b.csv.gz", "c.parquet")]
    assert [b["file"] for b in doc["batches"]] == expected  # sorted, not recursive
    assert [b["status"] for b in doc["batches"]] == ["ingested"] * 3
    assert sorted(set(observed(workspace, "cli").unique_id)) == ["a", "b", "c"]
    code, again, _ = ingest_json(workspace, "cli", str(folder))
    assert code == 0 and [b["status"] for b in again["batches"]] == ["skipped"] * 3

    make(workspace, "api")
    results = steadycast.ingest(workspace, "api", folder)
    assert [r.file for r in results] == expected
    assert [r.rows_stored for r in results] == [3, 3, 2]
    assert [r.status for r in steadycast.ingest(workspace, "api", [folder])] == ["skipped"] * 3


def test_a_folder_without_data_files_is_a_usage_error(workspace: Workspace, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x\n", encoding="utf-8")
    make(workspace, "meters")
    code, _, err = ingest_json(workspace, "meters", str(empty))
    assert code == 2
    assert f"{empty}: the folder holds no CSV or Parquet file" in err
    with pytest.raises(UsageError, match="holds no CSV or Parquet file"):
        steadycast.ingest(workspace, "meters", empty)


def test_a_glob_is_expanded_sorted_and_recursive_with_double_star(
    workspace: Workspace, tmp_path: Path
) -> None:
    folder = meter_folder(tmp_path)
    make(workspace, "cli")
    pattern = str(folder / "**" / "*.csv")
    code, doc, err = ingest_json(workspace, "cli", pattern)
    assert code == 0, err
    assert [b["file"] for b in doc["batches"]] == [
        str(folder / "a.csv"),
        str(folder / "older" / "z.csv"),
    ]

    make(workspace, "api")
    results = steadycast.ingest(workspace, "api", str(folder / "*.c*"))
    assert [r.file for r in results] == [str(folder / "a.csv"), str(folder / "b.csv.gz")]


def test_a_glob_matching_nothing_stores_nothing(workspace: Workspace, tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text(csv_text(hours("a", 0, 2)), encoding="utf-8")
    pattern = str(tmp_path / "incoming" / "*.csv")
    make(workspace, "meters")
    code, doc, err = ingest_json(workspace, "meters", str(good), pattern)
    assert code == 2
    assert f"{pattern}: the pattern matches no file" in err
    assert doc == {}  # refused before any batch: nothing to report
    assert observed(workspace, "meters").empty  # the good file named first is not stored either
    with pytest.raises(UsageError, match=r"\*\.csv: the pattern matches no file"):
        steadycast.ingest(workspace, "meters", [good, pattern])
    assert observed(workspace, "meters").empty


def test_a_batch_without_rows_is_said_in_words(workspace: Workspace, tmp_path: Path) -> None:
    header_only = tmp_path / "export.csv"
    header_only.write_text(HEADER, encoding="utf-8")
    make(workspace, "meters")
    done = run_cli("ingest", "meters", str(header_only), "-w", str(workspace.root))
    assert done.returncode == 0, done.stderr
    assert f"{header_only}: no rows, nothing stored" in done.stdout


def test_a_configured_glob_matching_nothing_points_at_the_pipeline_file(
    workspace: Workspace,
) -> None:
    make(workspace, "meters", path="in box/*.csv")  # no shell ever saw it: no quoting advice
    code, _, err = ingest_json(workspace, "meters")
    assert code == 2 and "in box/*.csv: the pattern matches no file" in err
    assert "check [source] path" in err and str(workspace.root / "in box" / "*.csv") in err
    assert "quote it" not in err


def test_stdin_is_one_batch_named_stdin(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = csv_text([*hours("a", 0, 3), "a,2024-01-01 05:00,lots"]).encode()
    make(workspace, "cli")
    code, doc, err = ingest_json(workspace, "cli", "-", stdin=data)
    assert code == 0, err
    [batch] = doc["batches"]
    assert (batch["file"], batch["status"], batch["rows_stored"]) == ("stdin", "ingested", 3)
    [row] = quarantined(workspace, "cli")
    assert (row["file"], row["line"], row["reason"]) == ("stdin", 5, "not_a_number")
    assert row["raw"] == "a,2024-01-01 05:00,lots"
    code, again, _ = ingest_json(workspace, "cli", "-", stdin=data)
    assert code == 0 and again["batches"][0]["status"] == "skipped"

    # Parquet bytes are recognised by their magic number, from Python as from the shell.
    sink = io.BytesIO()
    pq.write_table(
        pa.table({"meter_id": ["p"], "timestamp": ["2024-01-01 00:00"], "kwh": [4.0]}), sink
    )
    make(workspace, "api")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(sink.getvalue())))
    [result] = steadycast.ingest(workspace, "api", "-")
    assert (result.file, result.status, result.rows_stored) == ("stdin", "ingested", 1)
    assert observed(workspace, "api").unique_id.tolist() == ["p"]


def test_stdin_that_is_not_text_names_stdin_not_a_temporary_file(workspace: Workspace) -> None:
    make(workspace, "meters")
    code, _, err = ingest_json(workspace, "meters", "-", stdin=b"meter_id\n\x00\x01\x02")
    assert code == 1
    assert "stdin: binary data (a NUL byte on line 2)" in err
    assert ".tmp" not in err


def hive_dataset(root: Path) -> Path:
    """data/meter=M/date=D/part-0.parquet: the meter only in the path."""
    data = root / "data"
    for meter in ("north-1", "south-2"):
        for day in ("2024-01-01", "2024-01-02"):
            part = data / f"meter={meter}" / f"date={day}"
            part.mkdir(parents=True)
            stamps = [f"{day} {h:02d}:00" for h in range(3)]
            # The same readings under every partition: only the path tells the rows apart.
            pq.write_table(
                pa.table({"timestamp": stamps, "kwh": [1.0, 2.0, 3.0]}), part / "part-0.parquet"
            )
    (data / "_common_metadata").write_text("", encoding="utf-8")
    return data


def test_a_hive_dataset_adds_its_partition_values_as_columns(
    workspace: Workspace, tmp_path: Path
) -> None:
    data = hive_dataset(tmp_path)
    files = sorted(str(p) for p in data.rglob("*.parquet"))
    make(workspace, "cli", id_column="meter")
    code, doc, err = ingest_json(workspace, "cli", str(data))
    assert code == 0, err
    assert [b["file"] for b in doc["batches"]] == files  # each file its own batch
    assert [b["rows_stored"] for b in doc["batches"]] == [3] * 4
    assert len({b["batch_id"] for b in doc["batches"]}) == 4  # same bytes, other partition
    stored = observed(workspace, "cli")
    assert stored.groupby("unique_id").size().to_dict() == {"north-1": 6, "south-2": 6}
    code, again, _ = ingest_json(workspace, "cli", str(data))
    assert [b["status"] for b in again["batches"]] == ["skipped"] * 4

    make(workspace, "api", id_column="meter")
    results = steadycast.ingest(workspace, "api", data)
    assert [r.file for r in results] == files
    assert [r.ignored_columns for r in results] == [["date"]] * 4  # a key no column maps
    assert observed(workspace, "api").equals(stored)


def test_extra_columns_are_reported_once_per_batch(workspace: Workspace, tmp_path: Path) -> None:
    warm = tmp_path / "warm.csv"
    warm.write_text(
        csv_text(
            ["a,2024-01-01 00:00,1,21.5,x"], header="meter_id,timestamp,kwh,temperature,site\n"
        ),
        encoding="utf-8",
    )
    make(workspace, "cli")
    done = run_cli("ingest", "cli", str(warm), "-w", str(workspace.root))
    assert done.returncode == 0, done.stderr
    note = f"{warm}: ignored columns: temperature, site (declare them in [covariates] to use them)"
    assert note in " ".join(done.stdout.split())
    code, doc, _ = ingest_json(workspace, "cli", str(warm))
    assert code == 0 and "ignored_columns" not in doc["batches"][0]  # a skip reads nothing

    make(workspace, "api")
    [result] = steadycast.ingest(workspace, "api", warm)
    assert result.ignored_columns == ["temperature", "site"]
    assert result.rows_stored == 1  # reported, not refused


def test_object_urls_are_fetched_and_named_by_their_url(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object store's client is another module's (and its own test's): here it is replaced
    by one that hands over local files, to check how they are named."""
    asked: list[str] = []

    def fetch(url: str, into: Path) -> list[tuple[str, Path]]:
        asked.append(url)
        good = into / "0"
        good.write_text(csv_text([*hours("a", 0, 2), "a,2024-01-01 07:00,"]), encoding="utf-8")
        return [("s3://bucket/in/a.csv", good)]

    monkeypatch.setattr("steadycast.ingestion.objectstore.fetch", fetch)
    make(workspace, "meters")
    [result] = steadycast.ingest(workspace, "meters", "s3://bucket/in/")
    assert asked == ["s3://bucket/in/"]  # not folded into a path (s3:/bucket/in)
    assert (result.file, result.rows_stored, result.rows_quarantined) == (
        "s3://bucket/in/a.csv",
        2,
        1,
    )
    [row] = quarantined(workspace, "meters")
    assert (row["file"], row["line"], row["reason"]) == ("s3://bucket/in/a.csv", 4, "missing_value")
    assert not list((workspace.temp_dir).glob("objects-*"))  # the downloads are removed

    def fetch_junk(url: str, into: Path) -> list[tuple[str, Path]]:
        junk = into / "0"
        junk.write_bytes(b"meter_id,timestamp,kwh\n\xff\xfe,1,2\n")
        return [("s3://bucket/junk.csv", junk)]

    monkeypatch.setattr("steadycast.ingestion.objectstore.fetch", fetch_junk)
    with pytest.raises(InputFileError, match=r"^s3://bucket/junk\.csv: not UTF-8 text") as raised:
        steadycast.ingest(workspace, "meters", "s3://bucket/junk.csv")
    assert str(workspace.temp_dir) not in str(raised.value)


def test_the_configured_path_is_ingested_when_no_file_is_named(
    workspace: Workspace,
) -> None:
    incoming = workspace.root / "incoming"
    incoming.mkdir()
    (incoming / "day1.csv").write_text(csv_text(hours("a", 0, 3)), encoding="utf-8")
    (incoming / "day2.csv").write_text(csv_text(hours("a", 3, 3)), encoding="utf-8")
    make(workspace, "meters", path="incoming/*.csv")  # relative to the workspace
    code, doc, err = ingest_json(workspace, "meters")
    assert code == 0, err
    assert [b["file"] for b in doc["batches"]] == [
        str(incoming / "day1.csv"),
        str(incoming / "day2.csv"),
    ]
    assert len(observed(workspace, "meters")) == 6
    (incoming / "day3.csv").write_text(csv_text(hours("a", 6, 3)), encoding="utf-8")
    results = steadycast.ingest(workspace, "meters")
    assert [r.status for r in results] == ["skipped", "skipped", "ingested"]


def test_a_run_before_any_ingest_advises_the_command_that_reads_the_source(
    workspace: Workspace,
) -> None:
    incoming = workspace.root / "incoming"
    incoming.mkdir()
    (incoming / "day1.csv").write_text(csv_text(hours("a", 0, 3)), encoding="utf-8")
    make(workspace, "meters", path="incoming/*.csv")
    result = steadycast.run_pipeline(workspace, "meters")
    assert result.status == "failed"
    advised = str(result.error).rsplit("`", 2)[1]
    assert advised.split()[:3] == ["steadycast", "ingest", "meters"] and "FILE" not in advised
    code, doc, err = ingest_json(workspace, *advised.split()[2:])
    assert code == 0 and [b["status"] for b in doc["batches"]] == ["ingested"], err


def test_no_files_and_no_configured_source_says_how_to_name_them(workspace: Workspace) -> None:
    make(workspace, "meters")
    code, _, err = ingest_json(workspace, "meters")
    assert code == 2
    assert "pipeline 'meters' has no source configured" in err
    assert "[source] path" in err and "steadycast ingest meters FILE..." in err
    with pytest.raises(UsageError, match=r"set \[source\] path"):
        steadycast.ingest(workspace, "meters")


def test_a_configured_query_is_one_batch_named_by_its_database(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PostgreSQL reader is another module's (tested against a real server there): here a
    stand-in returns the rows, to check how the batch is named and replayed."""
    import types

    calls: list[tuple[str, str]] = []

    def read_query(database: str, query: str, *, columns: tuple[str, ...] = ()) -> pa.Table:
        calls.append((database, query))
        return pa.table(
            {
                "meter_id": ["a", "a", ""],
                "timestamp": ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 01:00"],
                "kwh": [1.0, 2.0, 3.0],
            }
        )

    fake = types.ModuleType("steadycast.ingestion.postgres")
    fake.read_query = read_query  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "steadycast.ingestion.postgres", fake)
    db = "postgresql://reader@127.0.0.1:5432/meters"
    make(workspace, "meters", query="SELECT * FROM readings", database=db)
    [result] = steadycast.ingest(workspace, "meters")
    assert calls == [(db, "SELECT * FROM readings")]
    assert (result.file, result.status, result.rows_stored) == (
        "postgresql://127.0.0.1:5432/meters",
        "ingested",
        2,
    )
    [row] = quarantined(workspace, "meters")
    assert (row["file"], row["line"], row["reason"]) == (
        "postgresql://127.0.0.1:5432/meters",
        3,
        "missing_id",
    )
    assert [r.status for r in steadycast.ingest(workspace, "meters")] == ["skipped"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"query": "SELECT 1", "database": "postgresql://u:hunter2@db:5432/m"},
            "source.database: database holds a password; remove it from the URL",
        ),
        (
            {"query": "SELECT 1", "database": "postgresql://u@db/m?password=hunter2"},
            "source.database: database holds a password; remove it from the URL",
        ),
        ({"query": "SELECT 1"}, "source: query needs database = "),
        (
            {"path": "x.csv", "query": "SELECT 1", "database": "postgresql://db/m"},
            "source: path and query are two different sources",
        ),
        ({"query": "SELECT 1", "database": "mysql://db/m"}, "is not a PostgreSQL URL"),
    ],
)
def test_a_wrong_source_is_a_config_error(
    workspace: Workspace, source: dict[str, str], message: str
) -> None:
    make(workspace, "meters", **source)
    code, _, err = ingest_json(workspace, "meters")
    assert code == 2
    assert message in err
    assert "hunter2" not in err
    with pytest.raises(ConfigError, match=r"pipelines/meters\.toml") as raised:
        steadycast.ingest(workspace, "meters")
    assert "hunter2" not in str(raised.value)
