"""Folders that appear whole or not at all: written in a hidden temp folder beside the target, made durable
(fsync), then published by one rename. A crash, a full disk or Ctrl-C leaves no half-written target (only
a hidden temp folder, which the `finally` removes when the process lives to run it)."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator


def fsync_tree(folder: Path) -> None:
    """Flush every file below `folder` to disk, so that a rename publishes durable contents."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def publish(tmp: Path, target: Path) -> None:
    """Rename `tmp` into `target`, replacing an existing `target` (moved aside first, then deleted)."""
    if target.exists():
        trash = target.parent / f".trash-{target.name}-{uuid.uuid4().hex[:8]}"
        os.rename(target, trash)
        os.rename(tmp, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, target)


@contextlib.contextmanager
def atomic_folder(target: Path, prefix: str) -> Iterator[Path]:
    """Yields an empty hidden folder beside `target` (named `prefix` plus random characters) to write into; on
    a normal exit its files are fsynced and it replaces `target` in one rename. On any exception it is removed
    and `target` is untouched."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        yield tmp
        fsync_tree(tmp)
        publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
