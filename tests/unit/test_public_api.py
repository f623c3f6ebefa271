"""The public surface: everything in ``steadycast.__all__`` exists and is what users import."""

from __future__ import annotations

import steadycast


def test_every_exported_name_resolves() -> None:
    for name in steadycast.__all__:
        assert getattr(steadycast, name) is not None, name


def test_the_entry_points_are_the_real_functions() -> None:
    from steadycast.ingestion.batch import ingest
    from steadycast.pipeline.run import run_pipeline
    from steadycast.testing import check_model

    assert steadycast.run_pipeline is run_pipeline
    assert steadycast.ingest is ingest
    assert steadycast.check_model is check_model
