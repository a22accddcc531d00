"""``shapseg worker JOB.json``: one explanation from a job file, reported as JSON lines.

Every line on stdout is one JSON object with an ``event`` field, in this order:
``started`` (pid, job file), then ``progress`` / ``players`` / ``partial`` events, then
exactly one of ``result`` (output folder and files; exit 0), ``error`` (``message`` for a
person, ``code`` for a program; exit 2 for bad input, 1 for an internal error) or
``cancelled`` (SIGTERM or SIGINT; exit 143 or 130). Anything libraries print goes to
stderr, so stdout stays machine-readable. On a stop request the run unwinds at once, the
partial output folder is removed and no result folder appears. A worker whose parent (the
GUI that started it) goes away stops the same way, so a crashed or killed Slicer never
leaves a worker computing for nobody (POSIX; on Windows the module kills the process tree).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback

from ..errors import ShapSegError
from .state import Cancelled

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
EXIT_SIGNAL = {signal.SIGTERM: 143, signal.SIGINT: 130}


class EventWriter:
    """JSON lines on a private copy of stdout; fd 1 itself is pointed at stderr. When the
    reader has gone (its pipe closed: the GUI was closed or killed) the run stops as on a
    stop request, instead of failing with a broken pipe half-way through."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self.stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)
        self.gone = False

    def __call__(self, event: dict) -> None:
        if self.gone:
            return
        try:
            self.stream.write(json.dumps(event, default=_plain) + "\n")
            self.stream.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.gone = True
            raise Cancelled() from None


def _plain(o):
    import numpy as np
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def watch_parent(interval: float = 0.5) -> None:
    """Send this process SIGTERM (a clean stop) once its parent has gone: an orphan is
    re-parented, so ``getppid`` changes."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, daemon=True, name="shapseg-parent-watch").start()


def run_worker(job_path: str) -> int:
    """Run the job at ``job_path``; returns the exit code."""
    from .explain import run_explanation, top_drivers
    from .job import read_job

    emit = EventWriter()
    received: list[int] = []

    def stop(signum, _frame):
        received.append(signum)
        raise Cancelled()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if os.name != "nt":
        watch_parent()
    emit({"event": "started", "pid": os.getpid(), "job_file": str(job_path)})
    try:
        job = read_job(job_path)
        expl = run_explanation(job, emit)
    except Cancelled:
        emit({"event": "cancelled", "message": "stopped on request; no result was written"})
        # The partial output is already removed; skip the interpreter's teardown of torch &
        # co. (about 2 s), so the process is gone within a second of the request.
        try:
            sys.stderr.flush()
        except OSError:             # the GUI that read it has gone
            pass
        os._exit(EXIT_SIGNAL.get(received[0] if received else signal.SIGTERM, 143))
    except ShapSegError as e:
        emit({"event": "error", "message": e.message, "code": e.code})
        print(f"shapseg: error: {e.message}", file=sys.stderr, flush=True)   # the same line as the CLI's
        return EXIT_BAD_INPUT
    except Exception as e:  # noqa: BLE001 - reported as an event, the traceback on stderr
        traceback.print_exc()
        emit({"event": "error", "message": f"internal error: {type(e).__name__}: {e}", "code": "internal"})
        return EXIT_INTERNAL
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    emit({"event": "result", "out": expl["out"], "files": expl["files"], "base_value": expl["base_value"],
          "full_value": expl["full_value"], "value": expl["value"], "target": expl["target"],
          "top": [{k: r[k] for k in ("id", "name", "phi", "se")} for r in top_drivers(expl)],
          "stats": {k: expl["stats"][k] for k in ("coalitions", "tile_forwards", "tile_forwards_roi",
                                                  "cache_hits", "seconds")}})
    return EXIT_OK
