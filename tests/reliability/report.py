"""Write docs/RELIABILITY.md from the figures a `make reliability` run recorded.

Usage: python tests/reliability/report.py FIGURES.jsonl docs/RELIABILITY.md
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

# The rows of the table, in order: what is injected and which promise is checked.
ROWS = {
    "crash-ingest": (
        "SIGKILL of ingest at random moments",
        "every acknowledged batch present, no partial batch, read = stored + quarantined",
    ),
    "crash-run": (
        "SIGKILL of `run` at every stage, then re-run",
        "same release content (hash) as a clean run; no half release visible",
    ),
    "concurrent-runs": (
        "two `run`s of the same pipeline started together",
        "one runs, the other is refused with a clear message; one release",
    ),
    "disk-full": (
        "a small tmpfs workspace filled up mid-ingest and mid-publish",
        "clear error, nothing committed is lost, re-run finishes once space is back",
    ),
    "corrupt-files": (
        "mutated CSV/Parquet files (bit flips, truncation, wrong encoding, binary junk) and a fuzzer on the parsing front",
        "each file rejected with a reason; the process never dies",
    ),
    "malformed-rows": (
        "bad rows: bad dates, NaN/inf, text, 1e308, empty or unicode ids, ids with quotes and SQL",
        "stored + quarantined = read; every quarantined row has a reason code",
    ),
    "time-edges": (
        "DST gaps and overlaps, leap days, mixed naive and aware timestamps, epoch integers",
        "stored in UTC; no hour lost or doubled; forecast timestamps strictly increasing",
    ),
    "plugin-chaos": (
        "plugins that hang, spin, allocate 10 GB, segfault, fork children, flood stdout, return NaN or wrong shapes",
        "killed within limit + 1 s; no leftover process; run completes on the fallback",
    ),
    "bad-series": (
        "degenerate series for each built-in model",
        "a finite forecast of the right length, or a classified fallback",
    ),
    "publish-vs-serve": (
        "new releases published while clients read",
        "every response complete and from exactly one release",
    ),
    "api-security": (
        "writes with no or wrong token; path traversal, SQL and oversized payloads in every parameter",
        "401/403 on writes; payloads rejected or treated as plain ids; no 5xx",
    ),
    "secret-leak": (
        "a canary token in config and environment, forced errors everywhere",
        "the canary never appears in logs, reports, API responses or the audit log",
    ),
    "load-soak": (
        "ingest + run + serve together",
        "memory of each process stays bounded; no error",
    ),
}


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def render(entries: list[dict[str, object]]) -> str:
    by_row: dict[str, list[dict[str, object]]] = {}
    for entry in entries:
        by_row.setdefault(str(entry["row"]), []).append(entry)
    lines = [
        "# Reliability",
        "",
        "The promises of steadycast, attacked on purpose. Each row injects real faults or bad input",
        "on one machine (loopback only) and reports a figure; every promise-violation count must be 0.",
        "",
        f"- Machine: {_machine()}",
        f"- Date: {time.strftime('%Y-%m-%d', time.gmtime())}",
        "- Reproduce: `make reliability` (long version; sizes can be changed with the variables in",
        "  `tests/reliability/`); `make test` runs the quick version of every row.",
        "",
        "| test | injected | promise checked | violations | figure |",
        "| --- | --- | --- | --- | --- |",
    ]
    missing = []
    for row, (injected, promise) in ROWS.items():
        found = by_row.get(row)
        if not found:
            missing.append(row)
            lines.append(f"| {row} | {injected} | {promise} | not run | |")
            continue
        violations = sum(int(str(e["violations"])) for e in found)
        figures = "; ".join(str(e["value"]) for e in found)
        lines.append(f"| {row} | {injected} | {promise} | {violations} | {figures} |")
    extra = sorted(set(by_row) - set(ROWS))
    for row in extra:
        found = by_row[row]
        violations = sum(int(str(e["violations"])) for e in found)
        lines.append(f"| {row} | | | {violations} | {'; '.join(str(e['value']) for e in found)} |")
    lines += ["", "## Details", ""]
    for row in [*ROWS, *extra]:
        for entry in by_row.get(row, []):
            detail = json.dumps(entry.get("detail") or {}, sort_keys=True)
            lines.append(f"- `{entry['test']}` ({entry['mode']}): {entry['value']}; {detail}")
    if missing:
        lines += ["", f"Rows without a figure in this run: {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def main(figures: str, output: str) -> int:
    path = Path(figures)
    entries = (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if path.exists()
        else []
    )
    Path(output).write_text(render(entries))
    violations = sum(int(e["violations"]) for e in entries)
    print(f"{output}: {len(entries)} figures, {violations} violations")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
