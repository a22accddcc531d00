"""Start, watch and stop the worker from a GUI without ever blocking it.

``WorkerProcess`` starts ``python -m ShapSegExplainLib.cli worker JOB`` with its events on
stdout and the libraries' messages on stderr, kept apart so that a half-written library line
can never corrupt an event. Both go to files in a private temporary folder, which ``poll()``
(called from a GUI timer) reads from where it stopped: no thread and no pipe, so nothing in
the GUI thread ever waits on the process, and every byte written is seen at the next tick.
Slicer runs Python threads only while its main thread runs Python (PythonQt has no thread
support enabled), so reader threads would only advance on the timer anyway; a pipe can also
fill and stall the worker, and a grandchild can hold it open after the worker has gone.

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
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .worker_events import FINAL, EventReader

GRACE_S = 0.4       # time to clean up after the terminate request, before the kill (2 x 0.4 s < 1 s)


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
        self._events = EventReader()
        self._folder: str | None = None
        self._readers: dict = {}          # stream name -> (file opened for reading, incremental decoder)
        self._pending: list[dict] = []
        self._final_seen = False

    # ----- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "WorkerProcess":
        kwargs: dict = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True      # its own process group: the fallback kill reaches children
        self._folder = tempfile.mkdtemp(prefix="shapseg-worker-")
        paths = {name: Path(self._folder) / f"{name}.txt" for name in ("out", "err")}
        try:
            with open(paths["out"], "wb") as out, open(paths["err"], "wb") as err:
                self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                                stdout=out, stderr=err, **kwargs)
        except OSError as e:
            self._close()
            self.finished = True
            self._pending.append({"event": "error", "code": "worker_not_started",
                                  "message": f"cannot start the worker ({self.command[0]}): {e}"})
            return self
        self._readers = {name: (open(path, "rb"), codecs.getincrementaldecoder("utf-8")(errors="replace"))
                         for name, path in paths.items()}
        return self

    def _read(self, name: str, final: bool = False) -> str:
        """What ``name`` has written since the last read (a split UTF-8 character waits)."""
        stream, decoder = self._readers[name]
        return decoder.decode(stream.read(), final=final)

    def _close(self) -> None:
        for stream, _ in self._readers.values():
            stream.close()
        self._readers = {}
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)     # a grandchild may still hold a file (Windows)
            self._folder = None

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
        """Every event written since the last call (never blocks). stderr lines come as ``log``
        events; when the process is gone, a missing final event becomes an error."""
        events, self._pending = self._pending, []
        if self.finished or not self._readers:
            return events
        exited = self.process.poll() is not None       # read after this: nothing the worker wrote is missed
        events += self._events.feed(self._read("out", final=exited))
        err_text = self._read("err", final=exited)
        events += [{"event": "log", "stream": "stderr", "message": line}
                   for line in err_text.replace("\r", "\n").split("\n") if line.strip()]
        if exited:
            events += self._finish()
        self._final_seen = self._final_seen or any(e.get("event") in FINAL for e in events)
        if exited and not self._final_seen:
            events.append({"event": "error", "code": "worker_crashed",
                           "message": f"the worker stopped without a result (exit code {self.process.returncode}); "
                                      "the log above has its last messages"})
        return events

    def _finish(self) -> list[dict]:
        self.finished = True
        self._close()
        return self._events.flush()

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
