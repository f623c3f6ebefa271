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
    "kill-run-processes": (
        "SIGKILL of `run` just started, during the checks, as partition processes start, mid-forecast (a model forking), as it publishes",
        "every process the run started gone within 1 s (counted for 2 s); the next run publishes",
    ),
    "failed-run-alerts": (
        "a run that fails: an internal error (injected), no data yet",
        "one stderr line, no traceback, exit 1; one incident per pipeline, alerted; resolved by the next finished run",
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
    "hostile-ingest": (
        "times in year 1/1677/2263/9999, a 2,000,000-character line, 3,000,000 blank lines, a gzip of 1 GB of zeros",
        "out-of-range times quarantined and never fail a run; a long line quarantined alone; junk refused in under 1 s; raw is the line as in the file",
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
    "feed-faults": (
        "real feeds (GEFCom zones, SGSC meters, CTA ridership) whose next delivery is x1000, /1000, zeros, a cumulative register, stuck, sign-flipped or shifted by hours, in the whole fleet or a few series",
        "held or the faulty series excluded; an incident names the fault and the series; served levels within x2 of history; the clean control publishes",
    ),
    "clean-sweep": (
        "every real dataset replayed as clean deliveries, hard periods included (holidays, COVID, 2008)",
        "no run held; series excluded per delivery reported",
    ),
}

# Rows whose figures are summarised in the main table and laid out in a section of their own.
FAULT_ORDER = [
    "scale_x1000",
    "scale_div1000",
    "zeros",
    "cumulative",
    "stuck",
    "sign_flip",
    "time_shift",
]


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


def _detail(entry: dict[str, object]) -> dict[str, object]:
    detail = entry.get("detail")
    return detail if isinstance(detail, dict) else {}


def _summary(row: str, found: list[dict[str, object]]) -> str:
    """One line for rows with many cases (the sections below lay them out)."""
    if row == "feed-faults":
        faults = [e for e in found if _detail(e).get("fault") != "control"]
        counts = {k: 0 for k in ("held", "excluded", "missed")}
        for e in faults:
            outcome = str(_detail(e).get("outcome"))
            counts[outcome if outcome in counts else "missed"] += 1
        controls = [e for e in found if _detail(e).get("fault") == "control"]
        published = sum(_detail(e).get("outcome") == "published" for e in controls)
        return (
            f"{len(faults)} faulty deliveries: {counts['held']} held, {counts['excluded']} "
            f"excluded, {counts['missed']} missed; clean controls published {published} of "
            f"{len(controls)} (see the detection table)"
        )
    if row == "clean-sweep":
        deliveries = sum(int(str(_detail(e).get("deliveries", 0))) for e in found)
        held = sum(len(list(_detail(e).get("held") or [])) for e in found)  # type: ignore[call-overload]
        excluded = sum(sum(_detail(e).get("excluded") or []) for e in found)  # type: ignore[call-overload]
        return (
            f"{len(found)} datasets, {deliveries} clean deliveries: {held} held, "
            f"{excluded} series excluded in all (see the clean-data table)"
        )
    return ""


def _detection_table(found: list[dict[str, object]]) -> list[str]:
    """Fault x scope against each dataset: held, excluded or missed (the last recorded run)."""
    if not found:
        return []
    cells: dict[tuple[str, str, str], str] = {}
    datasets: list[str] = []
    for e in found:
        d = _detail(e)
        dataset = str(d.get("dataset"))
        if dataset not in datasets:
            datasets.append(dataset)
        outcome = str(d.get("outcome"))
        if d.get("unnamed"):
            outcome += " (incident does not name it)"
        if d.get("garbage"):
            outcome += f" (garbage served: {len(d['garbage'])} series)"  # type: ignore[arg-type]
        cells[(str(d.get("fault")), str(d.get("scope")), dataset)] = outcome
    lines = [
        "",
        "## Feed faults: detection table",
        "",
        "Each real feed is published on clean history, then its next delivery arrives broken.",
        "*held*: the run is held (exit 3), the current release stays served; *excluded*: the",
        "faulty series keep their previous forecast and the rest is published; *missed*: the",
        "faulty data was forecast and published. *fleet*: every series is faulty; *few*: a few.",
        "A dash: not run (a time-zone shift applies to sub-daily feeds only; the quick version",
        "runs a subset).",
        "",
        "| fault | scope | " + " | ".join(datasets) + " |",
        "| --- | --- | " + " | ".join("---" for _ in datasets) + " |",
    ]
    faults = ["control", *FAULT_ORDER]
    faults += sorted({k[0] for k in cells} - set(faults))
    for fault in faults:
        for scope in ("fleet", "few"):
            row = [cells.get((fault, scope, ds), "") for ds in datasets]
            if any(row):
                shown = [c or "-" for c in row]
                lines.append(f"| {fault} | {scope} | " + " | ".join(shown) + " |")
    return lines


def _clean_table(found: list[dict[str, object]]) -> list[str]:
    """Clean real data: false holds and series excluded per delivery, per dataset."""
    if not found:
        return []
    lines = [
        "",
        "## Clean real data: false holds and exclusions",
        "",
        "| dataset | series | deliveries | models | false holds | failed runs | series excluded per delivery |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in found:
        d = _detail(e)
        held = list(d.get("held") or [])  # type: ignore[call-overload]
        failed = list(d.get("failed") or [])  # type: ignore[call-overload]
        lines.append(
            f"| {d.get('dataset')} | {d.get('series')} | {d.get('deliveries')} | "
            f"{d.get('models')} | {len(held)}{': ' + '; '.join(map(str, held)) if held else ''} | "
            f"{len(failed)} | {d.get('excluded')} |"
        )
    return lines


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
        figures = _summary(row, found) or "; ".join(str(e["value"]) for e in found)
        lines.append(f"| {row} | {injected} | {promise} | {violations} | {figures} |")
    extra = sorted(set(by_row) - set(ROWS))
    for row in extra:
        found = by_row[row]
        violations = sum(int(str(e["violations"])) for e in found)
        lines.append(f"| {row} | | | {violations} | {'; '.join(str(e['value']) for e in found)} |")
    lines += _detection_table(by_row.get("feed-faults", []))
    lines += _clean_table(by_row.get("clean-sweep", []))
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
