"""row_lines: a row's line number and exact text, read back from the file for the quarantine."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from steadycast.ingestion.rawlines import row_lines


def build(seed: int, lines: int, blanks: bool, ending: str) -> tuple[str, list[int], dict]:
    """A file of rows, rejected lines and (maybe) blank lines, with what each row must map to."""
    rng = random.Random(seed)
    out, rejected, truth = ["meter_id,timestamp,kwh"], [], {}
    for i in range(lines):
        roll = rng.random()
        if blanks and roll < 0.02:
            out.append("")
        elif roll < 0.04:
            out.append(f"bad line {i}")
            rejected.append(len(out))
        else:
            text = f"m{i},2024-01-01 {i % 24:02d}:00:00,{rng.choice(['1', 'NaN', ' 2.50 ', 'x'])}"
            out.append(text)
            truth[len(truth)] = (len(out), text)
    return ending.join(out) + ending, rejected, truth


@pytest.mark.parametrize("blanks", [False, True], ids=["no-blank-lines", "blank-lines"])
@pytest.mark.parametrize("ending", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_each_wanted_row_gets_its_line_and_exact_text(
    tmp_path: Path, blanks: bool, ending: str, compressed: bool
) -> None:
    text, rejected, truth = build(7, 120_000, blanks, ending)  # several 1 MiB blocks
    path = tmp_path / ("rows.csv.gz" if compressed else "rows.csv")
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compressed else data)
    wanted = [*sorted(random.Random(1).sample(sorted(truth), 300)), 0, len(truth) - 1]

    found = row_lines(path, "csv.gz" if compressed else "csv", rejected, wanted, len(truth))

    assert found is not None
    assert {k: found[k] for k in wanted} == {k: truth[k] for k in wanted}


def test_rows_that_are_not_lines_one_to_one_give_none(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    path.write_text(
        'meter_id,timestamp,kwh\nm,2024-01-01 00:00:00,"1\n2"\nm,2024-01-01 01:00:00,x\n'
    )
    assert row_lines(path, "csv", [], [1], rows=2) is None
