"""What a Dask worker runs: one whole explanation of a study, written exactly as
``shapseg explain`` writes it, with the model loaded once per worker process.

A task that ends in bad input (``ShapSegError``) is a result, not a failure to retry: it
comes back as ``failed`` with its one line. Anything else raises, and Dask retries it; a
worker that dies (killed, out of memory) has its task moved to another worker by the
scheduler. A retried task goes on from the journal its killed attempt left (``--resume``).
"""
from __future__ import annotations

import json
import os
import threading
import time
import warnings
from pathlib import Path

from ..errors import ShapSegError
from ..run.journal import FREE_FIELDS
from ..run.job import ExplainJob, job_from_dict
from ..run.outputs import RESULT_MARKER

# Fields a finished result may differ in from the study's job and still be that job's result
# (where and how fast it ran, not what it computed).
STUDY_FREE = FREE_FIELDS + ("device", "out", "version")
MODELS_KEPT = 2                     # models cached per worker process (the most recently used)
_MODELS: dict = {}
_LOCK = threading.Lock()            # one explanation at a time per process: the model is shared


def finished(job: dict) -> bool:
    """Whether ``job['out']`` holds this job's complete result (the folder is renamed into
    place only when every file is written, so the marker means complete)."""
    marker = Path(job["out"]) / RESULT_MARKER
    if not marker.is_file():
        return False
    try:
        settings = json.loads(marker.read_text()).get("settings", {})
    except (OSError, ValueError):
        return False
    return same_settings(settings, job)


def same_settings(a: dict, b: dict) -> bool:
    keys = (set(a) | set(b)) - set(STUDY_FREE)
    return all(a.get(k) == b.get(k) for k in keys)


def run_task(task: dict) -> dict:
    """Run one study task (``StudyTask`` fields plus ``state``, the study's bookkeeping
    folder, and ``torch_threads``); returns its outcome."""
    # torch's own deprecation notice when nnU-Net's trainers are imported, once per worker
    # process: noise between the study's progress bar lines
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.interface", category=FutureWarning)
    with _LOCK:
        note_attempt(Path(task["state"]), task["key"])
        if finished(task["job"]):           # another run of the study finished it meanwhile
            return {"status": "reused", "pid": os.getpid()}
        set_torch_threads(task.get("torch_threads"))
        job = job_from_dict(task["job"])
        job.device = worker_device(job.device)
        job.resume = can_resume(job)
        t0, loaded = time.perf_counter(), None
        try:
            from ..run.explain import run_explanation
            model, loaded = cached_model(job)
            run_explanation(job, model=model)
        except ShapSegError as e:
            return {"status": "failed", "error": e.message, "pid": os.getpid(), "model_loaded": loaded}
        return {"status": "done", "seconds": round(time.perf_counter() - t0, 3), "pid": os.getpid(),
                "resumed": job.resume, "model_loaded": loaded}


def set_torch_threads(threads: int | None) -> None:
    """The local cluster's plan, or a worker's own ``--nthreads`` (one task runs at a time
    per worker process, with all of its threads)."""
    import torch
    if not threads:
        try:
            from distributed import get_worker
            threads = get_worker().state.nthreads
        except (ImportError, ValueError, AttributeError):
            return
    torch.set_num_threads(int(threads))


def note_attempt(state: Path, key: str) -> None:
    """One line per attempt (the worker's PID), so the report counts retries and a user sees
    which process runs which task."""
    path = attempts_file(state, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(f"{os.getpid()} {time.time():.3f}\n")


def attempts_file(state: Path, key: str) -> Path:
    return state / (key.replace("/", "__") + ".attempts")


def attempts(state: Path, key: str) -> int:
    path = attempts_file(state, key)
    return len(path.read_text().splitlines()) if path.is_file() else 0


def can_resume(job: ExplainJob) -> bool:
    """A killed attempt of this job left a journal with the same settings."""
    from ..run.journal import check_resumable
    try:
        check_resumable(job)
    except ShapSegError:
        return False
    return True


def worker_device(device: str) -> str:
    """``auto`` on a worker of a local GPU cluster: the GPU of the worker's number (one
    worker per device); anything else as given."""
    if device != "auto":
        return device
    import torch
    if not torch.cuda.is_available():
        return "cpu"
    try:
        from distributed import get_worker
        name = get_worker().name
    except (ImportError, ValueError):
        return "cuda"
    return f"cuda:{int(name) % torch.cuda.device_count()}" if str(name).isdigit() else "cuda"


def cached_model(job: ExplainJob):
    """The job's model, loaded once per process and settings, and whether it was loaded now."""
    from ..nnunet.model import ModelSettings, NNUNetModel
    settings = ModelSettings.of(job)
    key = repr(settings)                # folds may be a list: the repr is the hashable key
    loaded = key not in _MODELS
    if loaded:
        while len(_MODELS) >= MODELS_KEPT:
            _MODELS.pop(next(iter(_MODELS)))
        _MODELS[key] = NNUNetModel(settings)
    _MODELS[key] = _MODELS.pop(key)         # most recently used last
    return _MODELS[key], loaded
