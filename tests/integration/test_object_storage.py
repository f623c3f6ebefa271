"""Object storage against a real S3-compatible server on 127.0.0.1 (moto's standalone server):
fetching what an ``s3://`` URL names, the errors a user meets, and the Parquet sink."""

from __future__ import annotations

import io
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from steadycast.config import ParquetSinkConfig
from steadycast.errors import InputFileError, SinkError
from steadycast.ingestion import objectstore, quarantined
from steadycast.sinks import open_sink
from steadycast.sinks.base import ReleaseRows
from steadycast.sinks.deliver import deliver
from steadycast.sinks.parquet import ParquetSink
from steadycast.workspace import Workspace
from tests.conftest import run_cli
from tests.pipelines import CHEAP_MODELS, pipeline_toml
from tests.servers.s3 import S3Server, free_port

CSV = "meter_id,timestamp,kwh\nm1,2024-01-01T00:00:00Z,1.5\nm1,2024-01-01T01:00:00Z,1.7\n"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, s3_store: S3Server, tmp_path: Path) -> S3Server:
    """The environment a user of the store has: its endpoint and credentials, nothing else."""
    for name in (
        "AWS_ENDPOINT_URL_S3",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name, value in s3_store.env.items():
        monkeypatch.setenv(name, value)
    return s3_store


def release(pipeline: str, release_id: str, n: int = 5) -> ReleaseRows:
    rows = pa.table(
        {
            "release_id": [release_id] * n,
            "unique_id": [f"m{i % 2}" for i in range(n)],
            "ds": pa.array(range(n), pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "forecast": [float(i) for i in range(n)],
        }
    )
    return ReleaseRows(
        pipeline=pipeline, release_id=release_id, run_id=f"run-{release_id}", rows=rows
    )


# -- fetching what a URL names ---------------------------------------------------------------


def test_is_object_url() -> None:
    assert objectstore.is_object_url("s3://bucket/key.csv")
    assert objectstore.is_object_url("S3://bucket/")
    assert not objectstore.is_object_url("data/s3/key.csv")
    assert not objectstore.is_object_url("s3:/bucket/key.csv")


def test_one_object_is_downloaded_byte_for_byte(aws: S3Server, tmp_path: Path) -> None:
    bucket = aws.make_bucket()
    url = aws.put(bucket, "in/meters.csv", CSV)
    fetched = objectstore.fetch(url, tmp_path / "dl")
    assert [u for u, _ in fetched] == [url]
    assert fetched[0][1].read_text() == CSV
    assert fetched[0][1].is_relative_to(tmp_path / "dl")


def test_a_prefix_fetches_every_data_object_and_keeps_hive_keys(
    aws: S3Server, tmp_path: Path
) -> None:
    bucket = aws.make_bucket()
    for key in (
        "ds/date=2024-01-02/part-0.parquet",
        "ds/date=2024-01-01/part-0.parquet",
        "ds/date=2024-01-01/part-1.csv.gz",
        "ds/_SUCCESS",
        "ds/date=2024-01-01/.part-0.parquet.crc",
        "ds/_temporary/part-9.parquet",
        "ds/README.txt",
        "other/x.csv",
    ):
        aws.put(bucket, key, b"x")
    fetched = objectstore.fetch(f"s3://{bucket}/ds/", tmp_path / "dl")
    assert [u for u, _ in fetched] == [
        f"s3://{bucket}/ds/date=2024-01-01/part-0.parquet",
        f"s3://{bucket}/ds/date=2024-01-01/part-1.csv.gz",
        f"s3://{bucket}/ds/date=2024-01-02/part-0.parquet",
    ]
    # the partition values stay readable in the local path too
    assert fetched[0][1] == tmp_path / "dl" / bucket / "ds" / "date=2024-01-01" / "part-0.parquet"
    # a prefix written without its slash names the same objects
    again = objectstore.fetch(f"s3://{bucket}/ds", tmp_path / "dl2")
    assert [u for u, _ in again] == [u for u, _ in fetched]


def test_a_glob_matches_within_path_segments(aws: S3Server, tmp_path: Path) -> None:
    bucket = aws.make_bucket()
    for key in ("2024-01/a.csv", "2024-02/b.csv", "2024-02/deep/c.csv", "2023-12/d.csv"):
        aws.put(bucket, key, CSV)
    fetched = objectstore.fetch(f"s3://{bucket}/2024-*/*.csv", tmp_path / "dl")
    assert [u for u, _ in fetched] == [
        f"s3://{bucket}/2024-01/a.csv",
        f"s3://{bucket}/2024-02/b.csv",
    ]
    deep = objectstore.fetch(f"s3://{bucket}/2024-02/**/*.csv", tmp_path / "dl2")
    assert [u for u, _ in deep] == [
        f"s3://{bucket}/2024-02/b.csv",
        f"s3://{bucket}/2024-02/deep/c.csv",
    ]


def test_missing_key_bucket_and_empty_prefix_name_the_url(aws: S3Server, tmp_path: Path) -> None:
    bucket = aws.make_bucket()
    aws.put(bucket, "in/notes.txt", "not data")
    with pytest.raises(InputFileError, match=rf"s3://{bucket}/in/missing.csv: no such object"):
        objectstore.fetch(f"s3://{bucket}/in/missing.csv", tmp_path)
    with pytest.raises(
        InputFileError, match=r"s3://no-such-bucket-x1/.*no such bucket 'no-such-bucket-x1'"
    ):
        objectstore.fetch("s3://no-such-bucket-x1/in/a.csv", tmp_path)
    with pytest.raises(InputFileError, match=r"no such bucket"):
        objectstore.fetch("s3://no-such-bucket-x1/in/", tmp_path)
    with pytest.raises(
        InputFileError, match=r"no CSV or Parquet objects under this prefix \(1 other"
    ):
        objectstore.fetch(f"s3://{bucket}/in/", tmp_path)
    with pytest.raises(InputFileError, match=r"no CSV or Parquet objects the pattern matches"):
        objectstore.fetch(f"s3://{bucket}/*/*.parquet", tmp_path)


def test_unreachable_endpoint_says_where_and_what_to_check(
    aws: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    with pytest.raises(
        InputFileError, match=rf"s3://bkt/a.csv: cannot reach the object store at {closed}"
    ):
        objectstore.fetch("s3://bkt/a.csv", tmp_path)


def test_no_credentials_is_said_before_any_request(
    aws: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    # the SDK's switch saying this machine has no instance role to ask for credentials
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(
        InputFileError, match=r"s3://bkt/a.csv: no credentials: set AWS_ACCESS_KEY_ID"
    ):
        objectstore.fetch("s3://bkt/a.csv", tmp_path)


def test_credentials_in_the_url_are_refused_without_echoing_them(
    aws: S3Server, tmp_path: Path
) -> None:
    url = f"s3://{aws.access_key}:{aws.secret_key}@bucket/a.csv"
    with pytest.raises(InputFileError) as caught:
        objectstore.fetch(url, tmp_path)
    message = str(caught.value)
    assert "credentials in the URL are refused" in message
    assert aws.secret_key not in message and aws.access_key not in message
    assert message.startswith("s3://***@bucket/a.csv:")


def test_errors_never_quote_the_secret(aws: S3Server, tmp_path: Path) -> None:
    """Whatever the failure, the secret key is not in the message."""
    messages = []
    for url in ("s3://no-such-bucket-x2/a.csv", "s3://no-such-bucket-x2/", "s3://x/[a.csv"):
        with pytest.raises(InputFileError) as caught:
            objectstore.fetch(url, tmp_path)
        messages.append(str(caught.value))
    assert not any(aws.secret_key in m for m in messages)


# -- the Parquet sink ------------------------------------------------------------------------


def test_parquet_sink_on_object_storage_writes_the_release_then_the_marker(aws: S3Server) -> None:
    bucket = aws.make_bucket()
    sink = open_sink(ParquetSinkConfig(kind="parquet", path=f"s3://{bucket}/forecasts/"))
    assert isinstance(sink, ParquetSink)
    assert sink.label == f"parquet s3://{bucket}/forecasts"
    first = release("meters", "R1", n=7)
    sink.write(first)
    assert aws.keys(bucket) == [
        "forecasts/pipeline=meters/_CURRENT",
        "forecasts/pipeline=meters/release_id=R1/part-0.parquet",
    ]
    marker = json.loads(aws.get(bucket, "forecasts/pipeline=meters/_CURRENT"))
    assert marker["release_id"] == "R1" and marker["run_id"] == "run-R1" and marker["rows"] == 7

    # read back as a reader would: the marker, then that release
    s3 = objectstore.filesystem(f"s3://{bucket}")
    back = pq.read_table(f"{bucket}/forecasts/pipeline=meters/{marker['file']}", filesystem=s3)
    assert back.equals(first.rows)

    second = release("meters", "R2", n=3)
    sink.write(second)
    sink.write(second)  # a retried delivery rewrites the same objects
    assert aws.keys(bucket) == [
        "forecasts/pipeline=meters/_CURRENT",
        "forecasts/pipeline=meters/release_id=R1/part-0.parquet",
        "forecasts/pipeline=meters/release_id=R2/part-0.parquet",
    ]
    marker = json.loads(aws.get(bucket, "forecasts/pipeline=meters/_CURRENT"))
    assert marker["release_id"] == "R2" and marker["rows"] == 3

    # the whole dataset, hive-partitioned: every release kept, the marker never read as data
    dataset = pads.dataset(f"{bucket}/forecasts", filesystem=s3, partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == 10
    current = dataset.to_table(filter=pads.field("release_id") == marker["release_id"])
    assert current.sort_by("forecast").column("forecast").to_pylist() == [0.0, 1.0, 2.0]


def test_parquet_sink_in_a_local_folder_is_atomic_and_readable_with_duckdb(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    sink = ParquetSink(ParquetSinkConfig(kind="parquet", path=str(root)))
    sink.write(release("meters", "R1", n=4))
    sink.write(release("meters", "R2", n=6))
    sink.write(release("meters", "R2", n=6))
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == [
        "pipeline=meters/_CURRENT",
        "pipeline=meters/release_id=R1/part-0.parquet",
        "pipeline=meters/release_id=R2/part-0.parquet",
    ]  # no temporary file left behind
    # the reader's recipe in docs/sinks.md
    current = json.loads((root / "pipeline=meters" / "_CURRENT").read_text())["release_id"]
    rows = duckdb.execute(
        "SELECT release_id, count(*) FROM read_parquet(?, hive_partitioning = true) "
        "WHERE pipeline = 'meters' AND release_id = ? GROUP BY release_id",
        [str(root / "*" / "*" / "*.parquet"), current],
    ).fetchall()
    assert rows == [("R2", 6)]


def test_parquet_sink_failures_name_the_sink(
    aws: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = ParquetSink(ParquetSinkConfig(kind="parquet", path="s3://no-such-bucket-x3/f"))
    with pytest.raises(SinkError, match=r"sink parquet s3://no-such-bucket-x3/f: no such bucket"):
        missing.write(release("meters", "R1"))

    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    local = ParquetSink(ParquetSinkConfig(kind="parquet", path=str(blocked)))
    with pytest.raises(SinkError, match=rf"sink parquet {blocked}: cannot write the folder"):
        local.write(release("meters", "R1"))

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    down = ParquetSink(ParquetSinkConfig(kind="parquet", path="s3://bkt/f"))
    with pytest.raises(SinkError, match=r"sink parquet s3://bkt/f: cannot reach the object store"):
        down.write(release("meters", "R1"))


def test_a_sink_url_with_credentials_is_refused_when_configured(aws: S3Server) -> None:
    with pytest.raises(InputFileError) as caught:
        ParquetSink(ParquetSinkConfig(kind="parquet", path=f"s3://k:{aws.secret_key}@bkt/f"))
    assert aws.secret_key not in str(caught.value)


# -- the product end to end: the CLI in a child process, the store over HTTP ------------------


def fleet_csv(series: int = 3, days: int = 10) -> str:
    """Hourly meters with a daily shape: enough history for the cheap models' backtest."""
    hours = pd.date_range("2024-03-01", periods=24 * days, freq="1h")
    frames = [
        pd.DataFrame(
            {
                "meter_id": f"m{i}",
                "timestamp": hours.strftime("%Y-%m-%d %H:%M"),
                "kwh": (1 + i) * (1.5 + np.sin(2 * np.pi * (hours.hour.to_numpy() + i) / 24)),
            }
        )
        for i in range(series)
    ]
    text: str = pd.concat(frames).to_csv(index=False)
    return text


def s3_workspace(tmp_path: Path, source: str, sink: str) -> Workspace:
    """A workspace whose pipeline reads ``source`` and writes each release to ``sink``."""
    ws = Workspace.init(tmp_path / "ws")
    text = pipeline_toml(models=CHEAP_MODELS, forecast={"workers": 1}, max_value=1000)
    text = text.replace("[source]\n", f"[source]\npath = {json.dumps(source)}\n", 1)
    text += f'\n[[sinks]]\nkind = "parquet"\npath = {json.dumps(sink)}\n'
    (ws.pipelines_dir / "meters.toml").write_text(text, encoding="utf-8")
    return ws


def secret_copies(root: Path, secret: str) -> list[str]:
    """Every file under ``root`` that holds ``secret`` (the store, the ledger, the control
    database with its audit log and run records, logs, reports)."""
    needle = secret.encode("utf-8")
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_ingest_an_object_url_with_the_real_command(s3_store: S3Server, tmp_path: Path) -> None:
    bucket = s3_store.make_bucket()
    url = s3_store.put(bucket, "in/fleet.csv", fleet_csv() + "m9,not a time,1.0\n")
    ws = s3_workspace(tmp_path, "unused.csv", f"s3://{bucket}/forecasts")
    done = run_cli("ingest", "meters", url, "-w", str(ws.root), "--json", env=s3_store.env)
    assert done.returncode == 0, done.stderr
    [batch] = json.loads(done.stdout)["batches"]
    assert (batch["file"], batch["status"], batch["rows_stored"]) == (url, "ingested", 720)
    assert batch["rows_quarantined"] == 1  # its quarantine and ledger name the object's URL
    [row] = quarantined(ws, "meters")
    assert (row["file"], row["line"]) == (url, 722)  # the header is line 1
    again = run_cli("ingest", "meters", url, "-w", str(ws.root), "--json", env=s3_store.env)
    assert again.returncode == 0, again.stderr
    # the same object's bytes are the same batch: replayed as a skip
    [replay] = json.loads(again.stdout)["batches"]
    assert (replay["batch_id"], replay["status"]) == (batch["batch_id"], "skipped")
    missing = run_cli(
        "ingest", "meters", f"s3://{bucket}/in/nope.csv", "-w", str(ws.root), env=s3_store.env
    )
    assert missing.returncode != 0
    assert f"s3://{bucket}/in/nope.csv: no such object" in missing.stderr
    with_secret = f"s3://{s3_store.access_key}:{s3_store.secret_key}@{bucket}/in/fleet.csv"
    refused = run_cli("ingest", "meters", with_secret, "-w", str(ws.root), env=s3_store.env)
    assert refused.returncode != 0 and "credentials in the URL are refused" in refused.stderr
    assert s3_store.secret_key not in refused.stdout + refused.stderr
    assert not secret_copies(ws.root, s3_store.secret_key)


def test_configured_object_source_to_a_parquet_sink_on_object_storage(
    aws: S3Server, tmp_path: Path
) -> None:
    """``[source] path = "s3://..."`` in, a release out to ``[[sinks]] kind = "parquet"`` on the
    same store; a sink whose bucket is missing holds the release back from that sink only, and
    a retry delivers it once the bucket is there. No copy of the secret key is kept."""
    bucket = aws.make_bucket()
    fleet = pd.read_csv(io.StringIO(fleet_csv()))
    for meter, rows in fleet.groupby("meter_id"):  # a hive dataset: the meter in the key
        body = pa.BufferOutputStream()
        pq.write_table(
            pa.Table.from_pandas(rows.drop(columns="meter_id"), preserve_index=False), body
        )
        aws.put(bucket, f"in/meter_id={meter}/part-0.parquet", body.getvalue().to_pybytes())
    aws.put(bucket, "in/_SUCCESS", "")
    ws = s3_workspace(tmp_path, f"s3://{bucket}/in/", f"s3://{bucket}/forecasts")
    env = aws.env
    ingested = run_cli("ingest", "meters", "-w", str(ws.root), "--json", env=env)
    assert ingested.returncode == 0, ingested.stderr
    assert f"s3://{bucket}/in/meter_id=m2/part-0.parquet" in ingested.stdout

    ran = run_cli("run", "meters", "-w", str(ws.root), "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    release_id = json.loads(ran.stdout)["release_id"]
    prefix = "forecasts/pipeline=meters"
    assert aws.keys(bucket, "forecasts/") == [
        f"{prefix}/_CURRENT",
        f"{prefix}/release_id={release_id}/part-0.parquet",
    ]
    marker = json.loads(aws.get(bucket, f"{prefix}/_CURRENT"))
    assert marker["release_id"] == release_id and marker["rows"] == 36  # 3 meters x 12 hours
    rows = pq.read_table(
        pa.BufferReader(aws.get(bucket, f"{prefix}/release_id={release_id}/part-0.parquet"))
    )
    assert rows.num_rows == 36 and set(rows.column("release_id").to_pylist()) == {release_id}
    assert sorted(set(rows.column("unique_id").to_pylist())) == ["m0", "m1", "m2"]

    # a sink that cannot be written is pending with a message naming it; a retry delivers
    later = f"s3://{bucket}-later/forecasts"
    text = (ws.pipelines_dir / "meters.toml").read_text(encoding="utf-8")
    (ws.pipelines_dir / "meters.toml").write_text(
        text.replace(f"s3://{bucket}/forecasts", later), encoding="utf-8"
    )
    [behind] = deliver(ws, ws.pipeline("meters"))  # what a run and `sinks retry` call
    assert (behind.sink, behind.state, behind.current_release_id) == (later, "pending", release_id)
    assert f"sink parquet {later}: no such bucket" in (behind.error or "")
    aws.client().create_bucket(Bucket=f"{bucket}-later")
    [retried] = deliver(ws, ws.pipeline("meters"))
    assert (retried.state, retried.release_id) == ("delivered", release_id)
    assert aws.keys(f"{bucket}-later") == [
        f"{prefix}/_CURRENT",
        f"{prefix}/release_id={release_id}/part-0.parquet",
    ]
    outputs = ingested.stdout + ingested.stderr + ran.stdout + ran.stderr + str(behind.error)
    assert aws.secret_key not in outputs
    assert not secret_copies(ws.root, aws.secret_key)
