"""One writer per result: a run holds ``.NAME.lock`` beside ``--out`` from its first check to
its last file, so a second run on the same ``--out`` stops at once with one clear line instead
of both writing one result and one journal.

The lock is ``filelock``'s (``flock`` on POSIX, ``msvcrt.locking`` on Windows): the kernel
drops it when its process dies, so a killed run never leaves a stale lock behind. The file
stays in place (empty once released): removing it would let a run that opened it just before
lock an inode no later run sees.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from ..errors import ShapSegError


def lock_path(out: str | Path) -> Path:
    out = Path(out).absolute()
    return out.parent / f".{out.name}.lock"


@contextmanager
def holding(out: str | Path) -> Iterator[None]:
    """Hold ``out``'s lock for the block; refused with code ``busy`` while another run holds it."""
    path = lock_path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), timeout=0)
        lock.acquire()
    except Timeout:
        raise ShapSegError(f"another run is writing {Path(out).absolute()} ({_holder(path)}); wait for it to "
                           "finish, stop it, or choose another --out", "busy") from None
    except OSError as e:        # the same words as outputs.check_output_folder's
        raise ShapSegError(f"--out {Path(out).absolute()}: cannot write to {path.parent} ({e.strerror or e})",
                           "bad_output") from None
    try:
        _note_holder(path, f"{os.getpid()} {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        yield
    finally:
        _note_holder(path, "")
        lock.release()


def _note_holder(path: Path, text: str) -> None:
    """Who holds the lock, for the message a second run prints (best effort; empty when free)."""
    try:
        path.write_text(text)
    except OSError:
        pass


def _holder(path: Path) -> str:
    try:
        pid, day, clock = path.read_text().split()
        return f"process {pid}, started {day} {clock}"
    except (OSError, ValueError):
        return "a process still running"
