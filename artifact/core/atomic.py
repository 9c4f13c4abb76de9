"""Folders that appear whole or not at all: written in a hidden temp folder beside the target, made durable
(fsync), then published by one rename. A crash, a full disk or Ctrl-C leaves no half-written target (only
a hidden temp folder, which the `finally` removes when the process lives to run it). Replacing a target moves
the old one aside first; a process killed right then leaves it there, and `recover_replaced` finishes the job."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import psutil


def host_tag() -> str:
    """This host's name as one field of a hidden folder's name (whose fields '-' separates)."""
    return socket.gethostname().replace("-", "_")


def died_here(host: str, pid: str) -> bool:
    """Whether the process `pid` of host `host` (as `host_tag` writes it), named in a hidden folder, has died on this
    host (False for another host's, or a name that is not a pid)."""
    return host == host_tag() and pid.isdigit() and not psutil.pid_exists(int(pid))


def fsync_tree(folder: Path) -> None:
    """Flush every file below `folder` to disk, so that a rename publishes durable contents."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def publish(tmp: Path, target: Path) -> None:
    """Rename `tmp` into `target`, replacing an existing `target` (moved aside first, to a folder naming this host
    and process, then deleted)."""
    if target.exists():
        trash = target.parent / f".trash-{target.name}-{host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(target, trash)
        os.rename(tmp, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, target)


def recover_replaced(parent: Path) -> None:
    """Finish the replacements that processes of this host died in (SIGKILL, power cut): an old target moved aside
    is deleted where its replacement was published, and put back where it was not (it is then the last published)."""
    for trash in parent.glob(".trash-*"):
        try:
            name, host, pid, _ = trash.name[len(".trash-"):].rsplit("-", 3)
        except ValueError:
            continue
        dead = died_here(host, pid)
        if dead and (parent / name).exists():
            shutil.rmtree(trash, ignore_errors=True)
        elif dead:
            os.rename(trash, parent / name)


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
