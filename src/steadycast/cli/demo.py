"""``steadycast demo``: the whole job on the bundled real sample."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steadycast.cli._app import JsonOpt, out


def demo(
    directory: Annotated[Path, typer.Argument(help="Where to create the demo workspace.")] = Path(
        "demo-workspace"
    ),
    json_out: JsonOpt = False,
) -> None:
    """The whole job on the bundled real sample (smart meters from the SGSC trial)."""
    from steadycast.demo import run_demo

    run_demo(directory, out, json_out=json_out)
