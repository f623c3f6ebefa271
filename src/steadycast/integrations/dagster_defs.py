"""The Dagster definitions of the workspace named by ``$STEADYCAST_WORKSPACE`` (else the
current directory), for ``dagster dev -m steadycast.integrations.dagster_defs`` and a
``workspace.yaml`` that loads a module."""

from __future__ import annotations

from steadycast.integrations.dagster import definitions

defs = definitions()
