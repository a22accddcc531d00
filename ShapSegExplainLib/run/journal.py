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

Each record is framed by its length and a CRC-32. Reading never changes the file: a record that
is cut (a kill mid-write) or damaged (a flipped bit) ends what is replayed, and only the run
that resumes, holding the ``--out`` lock (``run.lock``), cuts the file back to its last whole
record. (A reader that cut the file itself raced the writer: a poll that saw a record half
written cut it, the writer's rest landed after the cut, and the resumed run read garbage as
"other coalitions"; that was the flaky resume of issue 43.)

Hand-written: an append-only record file with fsync; no library journals numpy chunks.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ShapSegError

FRAME = struct.Struct("<QI")         # a record's frame: payload length, zlib.crc32 of the payload
HEADER = struct.Struct("<?IIII")     # proxy game?, coalitions k, players m, tile forwards it cost, memo entries
FORMAT = 2                           # 2: records framed with a length and a CRC
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
    try:
        old = json.loads(meta.read_text())
    except (ValueError, UnicodeDecodeError, OSError):
        old = None
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        raise ShapSegError(f"--resume: the interrupted run's journal of {job.out} is damaged or from another "
                           "release; run without --resume", "bad_resume")
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
            meta = json.dumps({"key": job_key(job), "format": FORMAT, "job": job.to_dict()}).encode()
            try:
                folder.mkdir(parents=True)
                _write_synced(folder / "job.json.tmp", meta)
                os.replace(folder / "job.json.tmp", folder / "job.json")    # whole or absent
            except OSError as e:
                shutil.rmtree(folder, ignore_errors=True)
                raise ShapSegError(f"cannot start the run's journal in {folder}: {e.strerror or e}",
                                   "bad_output") from None
            return cls(folder)
        check_resumable(job)
        journal = cls(folder)
        records, end = scan(folder / "values.bin")
        _cut(folder / "values.bin", end)            # appends go on after the last whole record
        for proxy, coalitions, values, forwards, entries in records:
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
        try:
            _append_synced(self.folder / "values.bin", FRAME.pack(len(record), zlib.crc32(record)) + record)
        except OSError as e:
            raise ShapSegError(f"cannot record the run's progress in {self.folder}: {e.strerror or e}; free space "
                               "and run the same command with --resume (what was recorded is kept)",
                               "bad_output") from None


def _pack_entry(pos: int, key: bytes, tensor) -> bytes | None:
    """A memo entry (a CPU tensor) as bytes; None for a dtype NumPy lacks (then the resumed
    run computes that tile again)."""
    try:
        arr = np.ascontiguousarray(tensor.numpy())
    except (TypeError, RuntimeError):
        return None
    return ENTRY.pack(pos, len(key), arr.ndim, arr.dtype.str.encode().ljust(4)) + \
        np.asarray(arr.shape, "<i8").tobytes() + key + arr.tobytes()


def _read_entries(data: memoryview, pos: int, n: int) -> list:
    """``n`` memo entries from ``pos`` of a record whose CRC held."""
    entries = []
    for _ in range(n):
        tile, klen, ndim, dtype = ENTRY.unpack_from(data, pos)
        pos += ENTRY.size
        shape = tuple(int(x) for x in np.frombuffer(data, "<i8", ndim, pos))
        pos += 8 * ndim
        dt = np.dtype(dtype.decode().strip())
        key = bytes(data[pos:pos + klen])
        count = int(np.prod(shape))
        arr = np.frombuffer(data, dt, count, pos + klen).reshape(shape).copy()
        entries.append(((tile, key), arr))
        pos += klen + dt.itemsize * count
    return entries


def _parse(data: memoryview):
    proxy, k, m, forwards, n = HEADER.unpack_from(data, 0)
    width = (m + 7) // 8
    bits = np.frombuffer(data, np.uint8, k * width, HEADER.size).reshape(k, width)
    coalitions = np.unpackbits(bits, axis=1, count=m).astype(bool)
    values = np.frombuffer(data, "<f8", k, HEADER.size + k * width).astype(np.float64)
    return bool(proxy), coalitions, values, int(forwards), _read_entries(data, HEADER.size + k * width + 8 * k, n)


def read_records(path: Path) -> list:
    """(proxy, coalitions, values, tile forwards, memo entries) of every whole record up to
    the first cut or damaged one. Read only: safe beside a run that is appending."""
    return scan(path)[0]


def scan(path: Path) -> tuple[list, int]:
    """The whole records and the byte where they end (at a cut or damaged record, or the end)."""
    if not path.is_file():
        return [], 0
    data = memoryview(path.read_bytes())
    out, pos = [], 0
    while pos + FRAME.size <= len(data):
        size, crc = FRAME.unpack_from(data, pos)
        end = pos + FRAME.size + size
        if end > len(data) or zlib.crc32(data[pos + FRAME.size:end]) != crc:
            break
        out.append(_parse(data[pos + FRAME.size:end]))
        pos = end
    return out, pos


def _cut(path: Path, end: int) -> None:
    """Cut the record file back to ``end`` (only the run that owns the journal does this)."""
    if path.is_file() and path.stat().st_size > end:
        with open(path, "r+b") as f:
            f.truncate(end)
            os.fsync(f.fileno())


def _append_synced(path: Path, data: bytes) -> None:
    """Append ``data`` and fsync; on a failed write (a full disk) cut the file back to where
    it was, so no half record stays (were that to fail too, the CRC stops a replay there)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
