"""``shapseg study``: every (case, setting) of a manifest as one task on a Dask cluster.

A ``LocalCluster`` by default (one single-threaded worker process per core, or per GPU,
as many as memory allows), or an existing cluster (``--scheduler``). Finished explanations
are skipped; a task whose worker dies is moved by the scheduler to another worker at most
``retries`` times, an exception is retried as often, and then the task is reported as
failed with its error while the study goes on. The report is written at the end, also
after Ctrl-C (with what had finished).
"""
from __future__ import annotations

import json
import os
import sys
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ShapSegError
from .manifest import StudyTask, read_manifest
from .report import write_study_report, write_text
from .tasks import attempts_file, finished, run_task

STUDY_MARKER = "study.json"
STATE = ".state"
WORKER_BASE_GB = 1.2        # a worker's runtime (torch, nnU-Net, one case): measured 1.46 GB RSS for the demo
MEMORY_SHARE = 0.8          # of the available memory, for the workers together


@dataclass(frozen=True)
class ClusterPlan:
    """How a local cluster is laid out, and why (printed, and kept in ``study.json``)."""
    workers: int
    threads: int              # torch threads per worker (each worker runs one task at a time)
    memory_gb: float          # Dask's memory limit per worker: above it the nanny restarts the worker
    gpus: int
    why: str


@dataclass
class StudyOutcome:
    """What one run of a study did (counted)."""
    out: Path
    tasks: int
    computed: int = 0
    reused: int = 0
    failed: list = field(default_factory=list)     # (task key, error)
    interrupted: bool = False
    plan: ClusterPlan | None = None


def plan_cluster(n_tasks: int, model_gb: float, workers: int | None = None) -> ClusterPlan:
    """Workers × threads for this machine: one worker per GPU, else one single-threaded
    worker per core (explanations are many small network calls: processes scale better
    than torch threads on few cores), at most as many as memory holds and as there are tasks."""
    import psutil
    import torch
    cpus = os.cpu_count() or 1
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    avail_gb = psutil.virtual_memory().available / 2 ** 30
    need_gb = WORKER_BASE_GB + model_gb
    by_memory = max(1, int(MEMORY_SHARE * avail_gb // need_gb))
    n = workers or min(gpus or cpus, by_memory, max(1, n_tasks))
    why = (f"{'given' if workers else f'{gpus} GPU(s)' if gpus else f'{cpus} core(s)'}; "
           f"{avail_gb:.1f} GiB available, {need_gb:.1f} GiB per worker (model {model_gb:.2f} GiB) → at most "
           f"{by_memory}; {n_tasks} task(s)")
    return ClusterPlan(workers=n, threads=max(1, cpus // n), memory_gb=round(MEMORY_SHARE * avail_gb / n, 2),
                       gpus=gpus, why=why)


def model_gb(tasks: list[StudyTask]) -> float:
    """A model's weights in memory, from its checkpoints' sizes (twice: nnU-Net's parameter
    list and one network per fold), for the largest model of the study."""
    sizes = [sum(p.stat().st_size for p in Path(t.job["model"]).rglob(t.job["checkpoint"])) for t in tasks]
    return 2 * max(sizes, default=0) / 2 ** 30


def run_study(manifest: str | Path, out: str | Path, scheduler: str | None = None, workers: int | None = None,
              retries: int = 2, progress: bool = True) -> StudyOutcome:
    """Run (or go on with) a study; every bad manifest entry is refused before any work."""
    require_packages()
    out = Path(out).absolute()
    tasks = read_manifest(manifest, out)
    prepare_folder(out)
    results = {t.key: {"status": "reused"} for t in tasks if finished(t.job)}
    todo = [t for t in tasks if t.key not in results]
    outcome = StudyOutcome(out, len(tasks), reused=len(results))
    for t in todo:                            # attempts are counted per run
        attempts_file(out / STATE, t.key).unlink(missing_ok=True)
    plan = None if scheduler or not todo else plan_cluster(len(todo), model_gb(todo), workers)
    outcome.plan = plan
    write_marker(out, manifest, tasks, plan, scheduler)
    if progress:
        print(f"study: {len(tasks)} explanations, {outcome.reused} already finished, {len(todo)} to run"
              + (f"; local cluster of {plan.workers} worker(s) × {plan.threads} thread(s) ({plan.why})" if plan
                 else f"; cluster at {scheduler}" if todo else ""), file=sys.stderr)
    try:
        if todo:
            with dask_client(scheduler, plan, retries) as client:
                run_tasks(client, todo, out, plan, retries, progress, results)
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        for t in todo:          # what finished unreported (interrupted), by its folder
            results.setdefault(t.key, {"status": "done" if finished(t.job) else "not run"})
        write_study_report(out, tasks, results, out / STATE)
    outcome.computed = sum(r["status"] == "done" for r in results.values())
    outcome.reused = sum(r["status"] == "reused" for r in results.values())
    outcome.failed = [(k, r.get("error", "")) for k, r in results.items() if r["status"] == "failed"]
    return outcome


def require_packages() -> None:
    """The study extra (``pip install 'shapsegexplain[study]'``), or one line saying so."""
    import importlib.util
    missing = [m for m in ("dask", "distributed", "yaml") if importlib.util.find_spec(m) is None]
    if missing:
        raise ShapSegError(f"shapseg study needs {', '.join(missing)}: pip install 'shapsegexplain[study]'",
                           "missing_dependency")


def prepare_folder(out: Path) -> None:
    """``out`` may be new, empty, or a previous run of a study (``study.json``); it is
    marked as a study folder at once."""
    if out.is_file():
        raise ShapSegError(f"--out {out} is a file; give a folder", "bad_output")
    if out.is_dir() and any(out.iterdir()) and not (out / STUDY_MARKER).is_file():
        raise ShapSegError(f"--out {out} exists and is not a study folder; choose a new or empty folder "
                           "(a previous run of a study there is continued)", "bad_output")
    try:
        (out / STATE).mkdir(parents=True, exist_ok=True)
        if not (out / STUDY_MARKER).is_file():
            write_text(out / STUDY_MARKER, json.dumps({"tool": "ShapSegExplain study"}))
    except OSError as e:
        raise ShapSegError(f"--out {out}: cannot write there ({e.strerror or e})", "bad_output") from None


def write_marker(out: Path, manifest, tasks: list[StudyTask], plan: ClusterPlan | None, scheduler) -> None:
    """``study.json``: the manifest, every task's job, and how this run was laid out."""
    data = {"tool": "ShapSegExplain study", "manifest": str(Path(manifest).absolute()),
            "cluster": {"scheduler": scheduler, "local": asdict(plan) if plan else None},
            "tasks": [{"case": t.case, "setting": t.setting, "grid": t.grid, "row": t.row, "job": t.job}
                      for t in tasks]}
    write_text(out / STUDY_MARKER, json.dumps(data, indent=2))


@contextmanager
def dask_client(scheduler: str | None, plan: ClusterPlan | None, retries: int):
    """A client of the given scheduler (an address, or a scheduler file) or of a new local cluster."""
    import logging

    import dask
    from distributed import Client, LocalCluster
    with dask.config.set({"distributed.scheduler.allowed-failures": retries}):
        if scheduler:
            kw = {"scheduler_file": scheduler} if Path(scheduler).is_file() else {"address": scheduler}
            try:
                client = Client(timeout="20s", **kw)
            except (OSError, TimeoutError, ValueError) as e:
                raise ShapSegError(f"cannot reach the Dask scheduler {scheduler}: {e}", "bad_scheduler") from None
            with client:
                yield client
            return
        with LocalCluster(n_workers=plan.workers, threads_per_worker=1, processes=True,
                          memory_limit=f"{plan.memory_gb}GiB", dashboard_address=None,
                          silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            yield client


def run_tasks(client, todo: list[StudyTask], out: Path, plan: ClusterPlan | None, retries: int,
              progress: bool, results: dict) -> None:
    """Submit every task (whole explanations); put each outcome in ``results`` as it finishes."""
    from distributed import as_completed
    from tqdm import tqdm
    futures = {}
    for t in todo:
        payload = {**asdict(t), "key": t.key, "state": str(out / STATE), "torch_threads": plan.threads if plan else None}
        if plan and payload["job"].get("max_memory_gb") is None:        # the memo stays inside the worker's limit
            payload["job"] = {**payload["job"], "max_memory_gb": round(plan.memory_gb / 2, 3)}
        key = f"shapseg-{t.case}-{t.setting}-{uuid.uuid4().hex[:8]}"
        futures[client.submit(run_task, payload, key=key, retries=retries, pure=False)] = t
    bar = tqdm(total=len(todo), desc="study", unit="expl", file=sys.stderr, disable=not progress)
    try:
        for fut in as_completed(futures):
            t = futures[fut]
            results[t.key] = outcome_of(fut, retries)
            failed = sum(r["status"] == "failed" for r in results.values())
            bar.set_postfix_str(f"{t.key} {results[t.key]['status']}" + (f", {failed} failed" if failed else ""))
            bar.update()
    finally:
        bar.close()


def outcome_of(fut, retries: int) -> dict:
    """A finished future as the task's outcome; errors after the retries become ``failed``."""
    if fut.status == "finished":
        return fut.result()
    exc = fut.exception()
    if type(exc).__name__ == "KilledWorker":
        return {"status": "failed", "error": f"its worker died {retries + 1} times (killed or out of memory)"}
    return {"status": "failed", "error": f"{type(exc).__name__}: {exc} (after {retries} retries)"}
