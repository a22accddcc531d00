"""A durable journal of the values a run's estimator was given, so a killed run resumes.

Every chunk of coalitions the estimator plays (the game and the proxy game) is appended
with its values, and the tile outputs it added to the memo, and ``fsync``-ed before the run
goes on. ``--resume`` replays it: the estimator is deterministic given the seed and the
values it gets, so the resumed run asks for the same coalitions in the same order (in chunks
that may be cut otherwise), takes their values from the journal without a tile forward,
refills the memo as the killed run had it, and goes on from where that run stopped; φ is
bitwise that of an uninterrupted run, and the two parts' tile forwards add up to the
uninterrupted run's (tested with ``kill -9``; with evictions the memo's recency order is
not restored, which can cost a few forwards). The
journal lives beside ``--out`` (``.NAME.journal``) and is removed once a final result is
committed; a run without ``--resume`` starts a new one.

Hand-written: an append-only record file with fsync; no library journals numpy chunks.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ShapSegError

HEADER = struct.Struct("<?IIII")     # proxy game?, coalitions k, players m, tile forwards it cost, memo entries
ENTRY = struct.Struct("<IIi4s")      # a memo entry: tile, key length, dimensions, dtype (then shape, key, data)
# job fields that change when the run stops or what it costs, never which coalitions it plays
FREE_FIELDS = ("time_limit", "budget_forwards", "max_memory_gb", "preview", "extra", "resume")


def journal_folder(out: str | Path) -> Path:
    out = Path(out).absolute()
    return out.parent / f".{out.name}.journal"


def check_resumable(job) -> None:
    """A journal of an interrupted run of ``job.out`` with the same settings exists (checked
    before any work, and again when sampling starts)."""
    meta = journal_folder(job.out) / "job.json"
    if not meta.is_file():
        raise ShapSegError(f"--resume: there is no interrupted run of {job.out} to resume", "nothing_to_resume")
    old = json.loads(meta.read_text())
    if old.get("key") != job_key(job):
        differ = sorted(k for k, v in job.to_dict().items() if k not in FREE_FIELDS and old.get("job", {}).get(k) != v)
        why = f"had other settings ({', '.join(differ)})" if differ else "was started by another release"
        raise ShapSegError(f"--resume: the interrupted run of {job.out} {why}; run without --resume", "bad_resume")


def job_key(job) -> str:
    """What a resumed run must share with the interrupted one: the job and the program (a
    release may key the tile memo or choose coalitions differently)."""
    from .. import __version__
    fields = {k: v for k, v in job.to_dict().items() if k not in FREE_FIELDS}
    fields["program"] = __version__
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Journal:
    """The record file and, on a resume, the records still to be replayed, per game."""
    folder: Path
    pending: dict[bool, deque] = field(default_factory=lambda: {False: deque(), True: deque()})
    forwards: Callable[[], int] = lambda: 0      # the evaluator's tile-forward counter
    new_entries: Callable[[], list] = lambda: []  # the memo entries added since the last call
    memo: list = field(default_factory=list)      # on a resume: the killed run's memo entries, oldest first
    replayed: int = 0                 # coalitions answered from the journal
    replayed_forwards: int = 0        # ... and the tile forwards the interrupted run spent on them

    @classmethod
    def start(cls, job, resume: bool) -> "Journal":
        """A new journal for ``job`` (an old one for the same --out is dropped), or with
        ``resume`` the interrupted run's, checked against the job."""
        folder = journal_folder(job.out)
        if not resume:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            _write_synced(folder / "job.json", json.dumps({"key": job_key(job), "job": job.to_dict()}).encode())
            return cls(folder)
        check_resumable(job)
        journal = cls(folder)
        for proxy, coalitions, values, forwards, entries in read_records(folder / "values.bin"):
            journal.pending[proxy].append((coalitions, values, forwards))
            journal.memo += entries
        return journal

    def play(self, chunk: np.ndarray, proxy: bool, evaluate: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The chunk's values: replayed coalition by coalition while the journal has them (the
        records may be cut otherwise than the chunks: a time limit paces the chunks by the
        clock), the rest evaluated and appended."""
        queue = self.pending[proxy]
        parts: list[np.ndarray] = []
        done = 0
        while queue and done < len(chunk):
            coalitions, values, forwards = queue.popleft()
            take = min(len(coalitions), len(chunk) - done)
            if not np.array_equal(coalitions[:take], chunk[done:done + take]):
                raise ShapSegError("--resume: this run asks for other coalitions than the interrupted one did "
                                   "(cost-aware draws or a changed program); run without --resume", "bad_resume")
            if take < len(coalitions):                  # the record's rest answers the next chunk
                queue.appendleft((coalitions[take:], values[take:], 0))
            parts.append(values[:take].copy())
            done += take
            self.replayed += take
            self.replayed_forwards += forwards
        if done < len(chunk):
            rest = chunk[done:]
            before = self.forwards()
            values = np.asarray(evaluate(rest), dtype=np.float64)
            self.append(rest, proxy, values, self.forwards() - before, self.new_entries())
            parts.append(values)
        return np.concatenate(parts)

    def append(self, chunk: np.ndarray, proxy: bool, values: np.ndarray, forwards: int = 0,
               entries: list = ()) -> None:
        """One chunk as one record (its memo entries inside it, so a cut record loses both)."""
        k, m = chunk.shape
        packed = [_pack_entry(pos, key, tensor) for (pos, key), tensor in entries]
        packed = [p for p in packed if p is not None]
        record = HEADER.pack(proxy, k, m, forwards, len(packed)) + np.packbits(chunk, axis=1).tobytes() + \
            values.astype("<f8").tobytes() + b"".join(packed)
        with open(self.folder / "values.bin", "ab") as f:
            f.write(record)
            f.flush()
            os.fsync(f.fileno())


def _pack_entry(pos: int, key: bytes, tensor) -> bytes | None:
    """A memo entry (a CPU tensor) as bytes; None for a dtype NumPy lacks (then the resumed
    run computes that tile again)."""
    try:
        arr = np.ascontiguousarray(tensor.numpy())
    except (TypeError, RuntimeError):
        return None
    return ENTRY.pack(pos, len(key), arr.ndim, arr.dtype.str.encode().ljust(4)) + \
        np.asarray(arr.shape, "<i8").tobytes() + key + arr.tobytes()


def _read_entries(data: bytes, pos: int, n: int, end: int):
    """``n`` memo entries from ``pos``; (entries, where they end), or None if cut before ``end``."""
    entries = []
    for _ in range(n):
        if pos + ENTRY.size > end:
            return None
        tile, klen, ndim, dtype = ENTRY.unpack_from(data, pos)
        pos += ENTRY.size
        if pos + 8 * ndim > end:
            return None
        shape = tuple(np.frombuffer(data, "<i8", ndim, pos))
        pos += 8 * ndim
        dt = np.dtype(dtype.decode().strip())
        size = klen + dt.itemsize * int(np.prod(shape))
        if pos + size > end:
            return None
        key = data[pos:pos + klen]
        arr = np.frombuffer(data, dt, int(np.prod(shape)), pos + klen).reshape(shape).copy()
        entries.append(((tile, key), arr))
        pos += size
    return entries, pos


def read_records(path: Path):
    """(proxy, coalitions, values, tile forwards, memo entries) of every complete record; a
    record cut by a kill is dropped (and cut off the file, so appends go on after the last
    whole one)."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    out, pos = [], 0
    while pos + HEADER.size <= len(data):
        proxy, k, m, forwards, n = HEADER.unpack_from(data, pos)
        width = (m + 7) // 8
        end = pos + HEADER.size + k * width + 8 * k
        if end > len(data):
            break
        bits = np.frombuffer(data, np.uint8, k * width, pos + HEADER.size).reshape(k, width)
        coalitions = np.unpackbits(bits, axis=1, count=m).astype(bool)
        values = np.frombuffer(data, "<f8", k, pos + HEADER.size + k * width).astype(np.float64)
        read = _read_entries(data, end, n, len(data))
        if read is None:
            break
        entries, end = read
        out.append((bool(proxy), coalitions, values, int(forwards), entries))
        pos = end
    if pos < len(data):
        with open(path, "r+b") as f:
            f.truncate(pos)
            os.fsync(f.fileno())
    return out


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
