"""Start, watch and stop the worker from a GUI without ever blocking it.

``WorkerProcess`` starts ``python -m ShapSegExplainLib.cli worker JOB`` with its events on
stdout and the libraries' messages on stderr, kept apart so that a half-written library line
can never corrupt an event. Two reader threads move the bytes into a queue; the GUI drains it
with ``poll()`` from a timer, so nothing in the GUI thread ever waits on the process.

``cancel()`` stops the worker *and every process it started* within a second: it asks the
whole tree to terminate (the worker then removes its partial output and exits 143), and
kills whatever is still alive after the grace period. The tree matters on Windows, where
Slicer's ``PythonSlicer`` is a launcher whose child does the work. psutil does the tree walk
(it ships with Slicer and is a dependency of this package); without it, a POSIX process group
or Windows' ``taskkill /T`` does the same.
"""
from __future__ import annotations

import codecs
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from .worker_events import FINAL, EventReader

GRACE_S = 0.4       # time to clean up after the terminate request, before the kill (2 x 0.4 s < 1 s)
READ_CHUNK = 65536


def worker_command(python: str, job_path: str | Path) -> list[str]:
    """The command that runs one job (``python`` is Slicer's ``PythonSlicer`` in Slicer)."""
    return [str(python), "-m", "ShapSegExplainLib.cli", "worker", str(job_path)]


def find_python_slicer(app_dir: str | Path) -> str | None:
    """Slicer's own Python launcher (``PythonSlicer``, which sets Slicer's environment): on the
    PATH or next to the Slicer executable."""
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    return shutil.which(name) or shutil.which(name, path=str(app_dir))


def package_root() -> Path:
    """The folder that holds ``ShapSegExplainLib``: the worker's working directory, so that
    ``python -m ShapSegExplainLib.cli`` finds the package where Slicer installed it."""
    return Path(__file__).resolve().parents[2]


class WorkerProcess:
    """One worker run: ``start()``, then ``poll()`` from a GUI timer until ``finished``."""

    def __init__(self, command: list[str], cwd: str | Path | None = None, env: dict | None = None) -> None:
        self.command, self.cwd, self.env = list(command), cwd, env
        self.process: subprocess.Popen | None = None
        self.finished = False
        self._queue: queue.Queue = queue.Queue()
        self._events = EventReader()
        self._threads: list[threading.Thread] = []
        self._final_seen = False
        self._exit_seen_at: float | None = None

    # ----- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "WorkerProcess":
        kwargs: dict = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True      # its own process group: the fallback kill reaches children
        try:
            self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, **kwargs)
        except OSError as e:
            self.finished = True
            self._queue.put(("event", {"event": "error", "code": "worker_not_started",
                                       "message": f"cannot start the worker ({self.command[0]}): {e}"}))
            return self
        for name, stream in (("out", self.process.stdout), ("err", self.process.stderr)):
            t = threading.Thread(target=self._read, args=(name, stream), daemon=True, name=f"shapseg-{name}")
            t.start()
            self._threads.append(t)
        return self

    def _read(self, name: str, stream) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        fd = stream.fileno()
        while True:
            try:
                chunk = os.read(fd, READ_CHUNK)
            except OSError:
                chunk = b""
            if not chunk:
                break
            self._queue.put((name, decoder.decode(chunk)))
        self._queue.put((name, decoder.decode(b"", final=True)))
        stream.close()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # ----- events ------------------------------------------------------------------------------
    def poll(self) -> list[dict]:
        """Every event that arrived since the last call (never blocks). stderr lines come as
        ``log`` events; when the process is gone, a missing final event becomes an error."""
        events, err_text = [], ""
        while True:
            try:
                name, payload = self._queue.get_nowait()
            except queue.Empty:
                break
            if name == "out":
                events += self._events.feed(payload)
            elif name == "err":
                err_text += payload
            else:
                events.append(payload)
        events += [{"event": "log", "stream": "stderr", "message": line}
                   for line in err_text.replace("\r", "\n").split("\n") if line.strip()]
        self._final_seen = self._final_seen or any(e.get("event") in FINAL for e in events)
        if not self.finished and self.process is not None and self.process.poll() is not None:
            events += self._finish_if_drained()
        return events

    def _finish_if_drained(self) -> list[dict]:
        now = time.monotonic()
        self._exit_seen_at = self._exit_seen_at or now
        readers_done = not any(t.is_alive() for t in self._threads)
        if not readers_done and now - self._exit_seen_at < 2.0:   # a grandchild may hold the pipes open
            return []
        if not self._queue.empty():
            return []
        self.finished = True
        events = self._events.flush()
        self._final_seen = self._final_seen or any(e.get("event") in FINAL for e in events)
        if not self._final_seen:
            code = self.process.returncode
            events.append({"event": "error", "code": "worker_crashed",
                           "message": f"the worker stopped without a result (exit code {code}); "
                                      "the log above has its last messages"})
        return events

    # ----- stopping ----------------------------------------------------------------------------
    def cancel(self, grace: float = GRACE_S) -> float:
        """Stop the worker and its children; returns the seconds it took (under a second)."""
        t0 = time.perf_counter()
        if self.running:
            stop_process_tree(self.process, grace)
        return time.perf_counter() - t0


def stop_process_tree(process: subprocess.Popen, grace: float = GRACE_S) -> None:
    """Terminate ``process`` and all its descendants; kill what is still alive after ``grace``.
    The root is waited for through ``Popen`` so that its exit code stays known."""
    try:
        import psutil
    except ImportError:
        _stop_without_psutil(process, grace)
        return
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.terminate()
    for p in children:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    deadline = time.monotonic() + grace
    _wait(process, grace)
    alive = _wait_gone(children, deadline)
    if process.poll() is None:
        process.kill()
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _wait(process, grace)
    _wait_gone(alive, time.monotonic() + grace)


def _wait_gone(procs: list, deadline: float) -> list:
    """The processes still running at ``deadline``. A zombie counts as gone: it runs nothing,
    and an orphan's zombie waits for a reaper that is not ours (psutil's own wait would
    wait for it until the timeout)."""
    import psutil

    def running(p) -> bool:
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
    alive = [p for p in procs if running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [p for p in alive if running(p)]
    return alive


def _wait(process: subprocess.Popen, timeout: float) -> None:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


def _stop_without_psutil(process: subprocess.Popen, grace: float) -> None:
    """The same with the operating system's tools: Windows' ``taskkill /T`` (tree), or the
    POSIX process group the worker was started in."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(process.pid)], capture_output=True, timeout=5)
        _wait(process, grace)
        return
    try:
        pgid = os.getpgid(process.pid)
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    _wait(process, grace)
    try:
        os.killpg(pgid, signal.SIGKILL)      # whatever of the group is left
    except ProcessLookupError:
        pass
    _wait(process, grace)
