"""Ingest from PostgreSQL against ingest of the same rows from a CSV file, for bench/ingest.py.

The rows of the generated CSV are loaded into a table of a PostgreSQL server started for the
benchmark (tests/servers/pg_cluster.py) before any clock starts, typed as a warehouse holds
them (text, timestamptz, double precision; the CSV's bad values become NULL). Then, in one child
process, alternating the order per repeat: ``steadycast.ingest(ws, "bench")`` of a pipeline
whose ``[source]`` is ``query`` + ``database`` (the configured source: the query fetched with
``read_query``, then ingested as a frame), against ``steadycast.ingest(ws, "bench", [csv])``.
The fetch alone is also timed, and so is the row-by-row alternative (a psycopg cursor, rows
through Python objects into Arrow) that ``read_query``'s COPY was chosen over.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# One child process: both ingests into fresh workspaces, in the order given.
QUERY_VS_FILE = """
import json, shutil, sys, time
from pathlib import Path
import pyarrow as pa
import steadycast
from steadycast.ingestion.postgres import read_query
from steadycast.workspace import Workspace
root, path, toml, dsn, query_first = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
query = "SELECT meter_id, timestamp, kwh FROM readings"
source = f'[source]\\nquery = "{query}"\\ndatabase = "{dsn}"\\n'
timings = {}
for kind in (["query", "file"] if query_first else ["file", "query"]):
    shutil.rmtree(root / kind, ignore_errors=True)
    ws = Workspace.init(root / kind)
    text = toml.replace("[source]\\n", source, 1) if kind == "query" else toml
    (ws.pipelines_dir / "bench.toml").write_text(text)
    started = time.perf_counter()
    done = steadycast.ingest(ws, "bench", None if kind == "query" else [Path(path)])
    timings[kind] = time.perf_counter() - started
    timings[kind + "_rows"] = sum(b.rows_stored for b in done)
started = time.perf_counter()
rows = read_query(dsn, query).num_rows
timings["fetch"] = time.perf_counter() - started
import psycopg
started = time.perf_counter()
with psycopg.connect(dsn) as con, con.cursor(binary=True) as cur:
    cur.execute(query)
    got = cur.fetchall()
    table = pa.table({c.name: [r[i] for r in got] for i, c in enumerate(cur.description)})
timings["cursor_fetch"] = time.perf_counter() - started
assert table.num_rows == rows
print(json.dumps(timings))
"""


def query_vs_file(data: Path, toml: str, repeats: int) -> dict[str, object]:
    """Medians of ``repeats`` child runs, each ingesting from the query and from ``data``."""
    from tests.servers.pg_cluster import Unavailable, running_server

    manager = running_server()
    try:
        server = manager.__enter__()
    except Unavailable as exc:
        return {"pg_note": f"not measured: {exc}"}
    try:
        rows = _load(server, data)
        env = {**os.environ, **server.env}
        runs = []
        for i in range(repeats):
            script = [sys.executable, "-c", QUERY_VS_FILE, str(data.parent / "pg_ws"), str(data)]
            done = subprocess.run(
                [*script, toml, server.dsn, str(i % 2)], capture_output=True, text=True, env=env
            )
            if done.returncode != 0:
                raise SystemExit(f"ingest from PostgreSQL failed: {done.stderr}")
            runs.append(json.loads(done.stdout))
    finally:
        manager.__exit__(None, None, None)
    assert all(r["query_rows"] == r["file_rows"] for r in runs), runs

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 2)

    return {
        "pg_query_s": median("query"),
        "pg_file_s": median("file"),
        "pg_ratio": round(median("query") / median("file"), 2),
        "pg_fetch_s": median("fetch"),
        "pg_cursor_fetch_s": median("cursor_fetch"),
        "pg_rows": rows,
        "pg_rows_stored": runs[0]["query_rows"],
        "pg_repeats": repeats,
    }


def _load(server: object, data: Path) -> int:
    """The CSV into ``readings``, typed; 'ERR' values as NULL. Returns the row count."""
    with server.connect() as con:  # type: ignore[attr-defined]
        con.execute("CREATE UNLOGGED TABLE raw (meter_id text, timestamp text, kwh text)")
        with (
            data.open("rb") as f,
            con.cursor().copy("COPY raw FROM STDIN (FORMAT csv, HEADER)") as copy,
        ):
            while chunk := f.read(8 << 20):
                copy.write(chunk)
        con.execute(
            "CREATE TABLE readings AS SELECT meter_id, (timestamp || '+00')::timestamptz "
            "AS timestamp, NULLIF(kwh, 'ERR')::float8 AS kwh FROM raw"
        )
        con.execute("DROP TABLE raw")
        con.execute("VACUUM ANALYZE readings")
        return int(con.execute("SELECT count(*) FROM readings").fetchone()[0])


def markdown(r: dict[str, object]) -> str:
    if "pg_query_s" not in r:
        return f"\nFrom PostgreSQL: {r.get('pg_note', 'not measured')}.\n"
    from common import today

    return f"""
From PostgreSQL ({today()}; `python bench/ingest_postgres.py --rows {r["pg_rows"]}
--repeats {r["pg_repeats"]}` in bench/, and part of `bench/ingest.py`): a `[source] query` on a
local PostgreSQL 15 server, ingested with `steadycast.ingest` of the configured source (the
query's rows fetched with `read_query`, then the frame's checks, quarantine and ledger), against
the same rows from the CSV file, in one process (medians of {r["pg_repeats"]}, order alternated),
{r["pg_rows_stored"]:,} rows stored: query {r["pg_query_s"]} s, file {r["pg_file_s"]} s,
**ratio {r["pg_ratio"]}x**. The fetch alone (`COPY (query) TO STDOUT` as CSV, parsed by Arrow)
took {r["pg_fetch_s"]} s; the row-by-row alternative (a psycopg binary cursor, rows through
Python objects into Arrow) took {r["pg_cursor_fetch_s"]} s for the same rows.
"""


MARK = "\nFrom PostgreSQL"


def main() -> None:
    """Measure only this case and replace its paragraph in results/ingest.md (the rest of that
    file comes from bench/ingest.py, which runs this case too)."""
    import argparse

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import RESULTS, WORK
    from ingest import PIPELINE, generate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = WORK / f"ingest_{args.rows}.csv"
    generate(data, args.rows)
    result = query_vs_file(data, PIPELINE, args.repeats)
    print(json.dumps(result, indent=2))
    path = RESULTS / "ingest.md"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    kept = text.split(MARK, 1)[0].rstrip() + "\n"
    path.write_text(kept + markdown(result).rstrip() + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
