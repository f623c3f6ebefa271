"""Commit a partition's outputs exactly once, whoever writes them and however often.

A partition's outputs are written by one attempt into a staging directory of its own
(``parts/_staging/part=K.<pid>.<random>``, on the same filesystem as the final place), made
durable, marked complete with ``_SUCCESS`` and then renamed to ``parts/part=K``. A directory
rename is atomic, and renaming onto a directory that already has content fails, so:

- a reader sees a partition either complete or not at all, never half written;
- the first attempt to commit wins; a later one (a Spark retry of a task that died after its
  commit, a speculative copy that finished second, a zombie of a killed executor) finds the
  partition committed, throws its staging directory away and reports the committed figures;
- an attempt that dies mid-write leaves only its own staging directory, cleared at the end of
  the stage.

Every attempt computes the same outputs from the same snapshot and config, so which attempt wins
does not change the release. This needs a filesystem whose directory rename is atomic (local
disks, NFS, Lustre, CephFS ...), not an object store; see docs/spark.md.

The reliability tests kill an attempt mid-write or right after its commit with
``ops.failpoints.kill_once``, its markers under ``STAGING``.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from pathlib import Path

from steadycast.storage.releases import fsync_path

DONE = "_SUCCESS"
STAGING = "_staging"


def is_committed(final: Path) -> bool:
    return (final / DONE).exists()


def staging_dir(final: Path) -> Path:
    """A new, empty directory for one attempt to write ``final``'s outputs in."""
    path = final.parent / STAGING / f"{final.name}.{os.getpid()}.{secrets.token_hex(4)}"
    path.mkdir(parents=True)
    return path


def commit(staging: Path, final: Path) -> bool:
    """Make ``staging`` durable, mark it complete and rename it to ``final``.

    Returns True if this call committed, False if ``final`` was already committed (the staging
    directory is then removed and the committed outputs stand).
    """
    for written in staging.iterdir():
        fsync_path(written)
    (staging / DONE).write_bytes(b"")
    fsync_path(staging / DONE)
    fsync_path(staging)
    try:
        os.rename(staging, final)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and is_committed(final):
            shutil.rmtree(staging, ignore_errors=True)
            return False
        raise
    fsync_path(final.parent)
    return True


def copy_committed(source: Path, final: Path) -> bool:
    """Commit a copy of another run's committed partition (resuming an interrupted run)."""
    staging = staging_dir(final)
    for item in source.iterdir():
        if item.name != DONE:
            shutil.copy2(item, staging / item.name)
    return commit(staging, final)


def clear_staging(root: Path) -> None:
    """Remove what attempts that died mid-write left behind (call when no attempt runs)."""
    shutil.rmtree(root / STAGING, ignore_errors=True)
