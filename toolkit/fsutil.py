"""Atomic file replacement and an advisory write lock (flock) for index and bundle directories.

The lock is a ``flock`` on a ``.lock`` file: the kernel drops it when the holder dies, even by
``kill -9``, so a stale lock cannot block the next run. The file records the holder's pid for the
error message.
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from toolkit.errors import LockedError, UsageError


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a part."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, value: object) -> None:
    write_atomic(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def file_in_the_way(folder: Path) -> Path | None:
    """The file (not folder) at ``folder`` or at one of its parents, if any: it cannot be created."""
    for path in (folder, *folder.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


@contextmanager
def write_lock(folder: Path, what: str = "index") -> Iterator[None]:
    """Hold the exclusive write lock of ``folder`` or raise :class:`LockedError` at once."""
    blocker = file_in_the_way(folder)
    if blocker is not None:
        raise UsageError(f"{folder}: cannot create the {what} folder, {blocker} is a file", hint="choose a folder path")
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / ".lock"
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise LockedError(
                f"{folder}: another toolkit process (pid {holder}) is writing this {what}",
                hint="wait for it to finish; the lock frees itself if that process dies",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def replace_dir(staged: Path, target: Path) -> None:
    """Put the fully written folder ``staged`` at ``target``, replacing what was there atomically.

    With an existing target the two folders are exchanged in one system call, so ``target`` is
    always either the complete old folder or the complete new one; the old one is then deleted.
    """
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    fsync_dir(staged)
    if target.exists() and _renameat2_exchange(staged, target):
        fsync_dir(target.parent)
        shutil.rmtree(staged, ignore_errors=True)
        return
    if target.exists():  # no renameat2: two renames, the window between them is microseconds
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
        os.rename(staged, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staged, target)
    fsync_dir(target.parent)


def remove_stale_staging(target: Path) -> None:
    """Delete staging and old folders of ``target`` left by writers that were killed.

    Call it while holding ``target``'s write lock, so no live writer is using them.
    """
    import shutil

    if not target.parent.exists():
        return
    prefixes = (f".{target.name}.tmp-", f".{target.name}.old-")
    for child in target.parent.iterdir():
        if child.name.startswith(prefixes) and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)


def staging_dir(target: Path) -> Path:
    """A fresh hidden sibling of ``target`` to write into before :func:`replace_dir`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    os.chmod(staged, 0o777 & ~_umask())  # mkdtemp creates 0700
    return staged
