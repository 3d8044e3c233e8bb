"""Files written so that a reader sees the old content or the new, never a mix, and so that
nothing a killed writer left behind lingers: checkpoints, packages and zoo indexes use these."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def default_permissions(path: Path) -> None:
    """Give a file or folder made by ``tempfile`` (0600/0700) the usual umask-based mode, so
    packages and hubs can be shared and shipped like any other files."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~umask)


STALE_AFTER_S = 600  # a write takes seconds; a temporary this old belongs to a killed writer


def remove_stale_temporaries(parent: Path, name: str) -> None:
    """Remove the ``.NAME.*.tmp`` files and folders that killed writers of ``NAME`` left behind
    (a live writer's temporary is younger than ``STALE_AFTER_S``, so it is left alone)."""
    cutoff = time.time() - STALE_AFTER_S
    for leftover in Path(parent).glob(f".{glob.escape(name)}.*.tmp"):
        try:
            if leftover.lstat().st_mtime >= cutoff:
                continue
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        except OSError:
            pass  # gone already, or not ours to remove: never fail a write over a leftover


def write_atomic(path: Path, data: bytes) -> None:
    """Write a small file so that readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    default_permissions(Path(tmp))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    remove_stale_temporaries(path.parent, path.name)


def replace_dir(new: Path, directory: Path) -> None:
    """Swap ``new`` in for ``directory`` by two renames (Linux cannot swap folders in one); a
    crash between them leaves the previous folder as ``.NAME.old``, which readers fall back to
    (``live_folder``) and the next write puts back first. Temporaries of killed writes are
    removed after."""
    old = interrupted_copy(directory)
    if not directory.exists() and old.exists():  # a crash between the two renames, last time
        os.replace(old, directory)
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
        os.replace(new, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, directory)
    fsync_dir(directory.parent)
    remove_stale_temporaries(directory.parent, directory.name)


def interrupted_copy(directory: Path) -> Path:
    """Where ``replace_dir`` keeps the previous folder while it swaps in a new one."""
    return directory.with_name(f".{directory.name}.old")


def live_folder(directory: Path) -> Path:
    """``directory``, or the previous folder that a write killed between its two renames left
    as ``.NAME.old`` (see ``replace_dir``)."""
    directory = Path(directory)
    interrupted = interrupted_copy(directory)
    return interrupted if not directory.exists() and interrupted.is_dir() else directory
