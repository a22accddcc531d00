"""Crash-consistency campaign (issue 43): real explanations hit by faults at random moments,
then the user's next action, checked against an uninterrupted run.

In the spirit of SQLite's crash tests: every trial runs the worker (``shapseg worker JOB``,
what the Slicer panel starts) on a real model and injects one fault:

* ``kill9``            SIGKILL of the worker at a random moment of a phase chosen at random
                       (setup, the Shapley phase's first game / later games, the curves, writing);
* ``damaged_journal``  a kill in the Shapley phase, then the journal truncated at a random byte
                       or one random bit flipped (in ``values.bin`` or ``job.json``);
* ``disk_full``        ``--out`` on a small tmpfs filled so that a random number of bytes is
                       left (the run hits ENOSPC wherever that runs out); then space is freed;
* ``second_writer``    the same job started again on the same ``--out`` while the first runs;
* ``parent_sigterm``   SIGTERM of the process that started the worker through the panel layer
                       (``panel.worker_process.WorkerProcess``), as when Slicer is closed.

The next action is the panel's (``panel.run_request``): the same job with ``--resume`` when the
journal has coalitions, else the same job again. Each trial passes only if the faulted run
either ended with one ``shapseg: error:`` line and exit code 2 (or was killed), left no result
folder that is not a complete result, and the recovery gave φ bitwise equal to the
uninterrupted run with nothing left over (no journal, partial or old folder). Anything else —
a traceback, a wrong φ, a half-written folder, two writers — is a failure, listed by seed.

    python benchmarks/crash_campaign.py --trials 200 --out benchmarks/results/crash_campaign
    python benchmarks/crash_campaign.py --trials 10 --configs synthetic   # the suite's short form

Writes ``trials.jsonl`` (one line per trial, as it goes) and ``table.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"
KINDS = ("kill9", "damaged_journal", "disk_full", "second_writer", "parent_sigterm")
KILL_PHASES = ("setup", "first_game", "later_games", "faithfulness", "write")
TMPFS_MB = 64      # at least; more when a run needs more
_DEMO_CASES: dict = {}


# ----- the explanations ----------------------------------------------------------------------------
def make_job(config: str, work: Path, out: Path):
    """A real, short explanation per config: every phase present, a few seconds each."""
    from ShapSegExplainLib.run.job import ExplainJob
    common = dict(mirroring=False, device="cpu", faithfulness_steps=2)
    if config == "demo":                 # the demo model on its phantom: hybrid players, coarse to fine, proxy
        from ShapSegExplainLib.demo.demo_case import demo_job, write_demo_case
        if work not in _DEMO_CASES:
            _DEMO_CASES[work] = write_demo_case(work / "demo_inputs")
        return demo_job(_DEMO_CASES[work], out, refinements=1, **common)
    if config == "abdo7":                # the trained abdo7-small on the real CT: organ players, flat, proxy
        ct = SHARED / "data" / "totalseg-example" / "ct.nii.gz"
        return ExplainJob(ct=str(ct), model=str(SHARED / "models" / "abdo7-small"), target="kidney_left",
                          out=str(out), roi_box=[30, 27, 8, 35, 32, 13], players="organ", levels=1,
                          budget=48, coalition_batch=8, **common).check()
    if config == "synthetic":            # the suite's short form: a random-weight model on a synthetic CT
        sys.path.insert(0, str(ROOT / "Testing"))
        from fixtures.model_folder import ModelSpec, write_model_folder
        from helpers import synthetic_ct
        import SimpleITK as sitk
        model = work / "model"
        if not model.is_dir():
            write_model_folder(model, ModelSpec(patch_size=(16, 32, 32), spacing=(3.0, 1.5, 1.5),
                                                features=(4, 8, 16), seed=1))
            sitk.WriteImage(synthetic_ct(), str(work / "ct.nii.gz"))
        return ExplainJob(ct=str(work / "ct.nii.gz"), model=str(model), target="1", out=str(out),
                          roi_box=[14, 14, 8, 20, 20, 11], players="fcc", spacing_mm=6.0, margin_mm=4.0,
                          levels=1, budget=120, coalition_batch=8, **common).check()
    raise SystemExit(f"unknown config {config}")


THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}   # two trials at a time


class Live:
    """A worker process and its events, read as they come (time since start, event)."""

    def __init__(self, command: list[str]) -> None:
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, **THREADS}, cwd=ROOT)
        self.events: list[tuple[float, dict]] = []
        self.stderr = ""
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()

    def _read_out(self) -> None:
        for line in self.p.stdout:
            try:
                self.events.append((time.perf_counter() - self.t0, json.loads(line)))
            except ValueError:
                self.events.append((time.perf_counter() - self.t0, {"event": "garbage", "line": line}))

    def _read_err(self) -> None:
        self.stderr = self.p.stderr.read()

    def wait(self, timeout: float = 900) -> int:
        code = self.p.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=10)
        return code

    def phase(self) -> str:
        return phase_of([e for _, e in self.events])


def phase_of(events: list[dict]) -> str:
    """Where a run is, from its events so far (``KILL_PHASES``)."""
    phases = [e["phase"] for e in events if e.get("event") == "progress"]
    last = phases[-1] if phases else "load"
    if last == "shapley":
        return "first_game" if not any(e.get("event") == "partial" for e in events) else "later_games"
    return last if last in ("faithfulness", "write") else "setup"


def worker_command(job_path: Path) -> list[str]:
    return [sys.executable, "-m", "ShapSegExplainLib.cli", "worker", str(job_path)]


def phis(out: Path) -> list[float] | None:
    try:
        return [p["phi"] for p in json.loads((out / "explanation.json").read_text())["players"]]
    except (OSError, ValueError, KeyError):
        return None


def complete(out: Path) -> bool:
    """A result folder with every file its explanation.json names."""
    try:
        expl = json.loads((out / "explanation.json").read_text())
    except (OSError, ValueError):
        return False
    names = [Path(f).name for f in expl.get("files", {}).values()] or ["players.seg.nrrd", "report.png"]
    return all((out / n).is_file() for n in names)


def leftovers(out: Path) -> list[str]:
    """What a finished run must not leave beside its result (the lock file stays, empty)."""
    return sorted(p.name for p in out.parent.iterdir()
                  if p.name.startswith(f".{out.name}.") and p.name != f".{out.name}.lock")


# ----- one trial -------------------------------------------------------------------------------------
@dataclass
class Trial:
    config: str
    kind: str
    seed: int
    target_phase: str = ""
    phase: str = ""               # where the fault landed (from the worker's events)
    detail: str = ""
    first_exit: int | None = None
    first_outcome: str = ""       # killed / clear_error / refused / finished / stopped
    recovery: str = ""            # resumed / rerun / none (the first run finished)
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Campaign:
    def __init__(self, work: Path, configs: list[str]) -> None:
        self.work, self.configs = work, configs
        self.refs: dict[str, dict] = {}

    # -- the uninterrupted run of each config: φ, phase windows, disk use
    def reference(self, config: str) -> dict:
        if config in self.refs:
            return self.refs[config]
        folder = self.work / config / "reference"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        job = make_job(config, self.work / config, folder / "out")
        live = Live(worker_command(job.write(folder / "job.json")))
        peak = _watch_bytes(live, folder)
        code = live.wait()
        if code != 0 or not complete(folder / "out"):
            raise SystemExit(f"the reference run of {config} failed ({code}): {live.stderr[-2000:]}")
        windows: dict[str, list[float]] = {}
        for i, (t, e) in enumerate(live.events):
            if e.get("event") in ("progress", "partial"):
                key = phase_of([x for _, x in live.events[:i + 1]])
                windows.setdefault(key, [t, t])[1] = t
        end = live.events[-1][0]
        order = [k for k in KILL_PHASES if k in windows]
        for a, b in zip(order, order[1:] + [None]):     # a phase lasts until the next one starts
            windows[a][1] = windows[b][0] if b else end
        self.refs[config] = {"phi": phis(folder / "out"), "windows": windows, "bytes": peak, "seconds": end,
                             "evaluations": json.loads((folder / "out" / "explanation.json").read_text())
                             ["shapley"]["n_evaluations"]}
        return self.refs[config]

    def trial(self, config: str, kind: str, seed: int) -> Trial:
        rng = random.Random(seed)
        ref = self.reference(config)
        tr = Trial(config, kind, seed)
        t0 = time.perf_counter()
        folder = Path(tempfile.mkdtemp(prefix=f"{kind}-{seed}-", dir=self.work / config))
        mount = mount_tmpfs(folder / "tmpfs", TMPFS_MB + 2 * ref["bytes"] // 2 ** 20) if kind == "disk_full" else None
        out = (mount or folder) / "out"
        job = make_job(config, self.work / config, out)
        path = job.write(folder / "job.json")
        filler = None
        try:
            if kind == "disk_full":
                if mount is None:
                    raise RuntimeError("cannot mount a tmpfs")
                filler = _fill(mount, rng.randint(0, int(ref["bytes"] * 1.1)))
                tr.detail = f"{_free(mount)} bytes free"
            getattr(self, f"_{kind}")(tr, rng, ref, path, out)
            if filler is not None:
                filler.unlink()                                    # the user frees space
            self._check_first(tr, out, ref)
            self._recover(tr, path, job, out)
            self._check_final(tr, out, ref)
        except Exception as e:  # noqa: BLE001 - a campaign reports every failure and goes on
            tr.problems.append(f"campaign: {type(e).__name__}: {e}")
        finally:
            if filler is not None and filler.exists():
                filler.unlink()
            if mount is not None:
                subprocess.run(["umount", str(mount)], capture_output=True)
            shutil.rmtree(folder, ignore_errors=True)
        tr.ok = not tr.problems
        tr.seconds = round(time.perf_counter() - t0, 2)
        return tr

    # -- the faults
    def _kill9(self, tr: Trial, rng: random.Random, ref: dict, path: Path, out: Path) -> None:
        tr.target_phase = rng.choice([p for p in KILL_PHASES if p in ref["windows"]])
        live = Live(worker_command(path))
        _kill_in(live, tr, rng, ref, signal.SIGKILL)

    def _damaged_journal(self, tr: Trial, rng: random.Random, ref: dict, path: Path, out: Path) -> None:
        tr.target_phase = rng.choice([p for p in ("first_game", "later_games") if p in ref["windows"]])
        live = Live(worker_command(path))
        _kill_in(live, tr, rng, ref, signal.SIGKILL)
        from ShapSegExplainLib.run.journal import journal_folder
        folder = journal_folder(out)
        target = folder / rng.choice(["values.bin", "values.bin", "values.bin", "job.json"])
        if not target.is_file() or target.stat().st_size == 0:
            tr.detail = f"no {target.name} to damage (killed at {tr.phase})"
            return
        data = bytearray(target.read_bytes())
        if target.name == "values.bin" and rng.random() < 0.5:
            cut = rng.randrange(len(data))
            target.write_bytes(bytes(data[:cut]))
            tr.detail = f"{target.name} truncated at byte {cut} of {len(data)}"
        else:
            i, bit = rng.randrange(len(data)), rng.randrange(8)
            data[i] ^= 1 << bit
            target.write_bytes(bytes(data))
            tr.detail = f"{target.name}: bit {bit} of byte {i} of {len(data)} flipped"

    def _disk_full(self, tr: Trial, rng: random.Random, ref: dict, path: Path, out: Path) -> None:
        live = Live(worker_command(path))
        tr.first_exit = live.wait()
        tr.phase = live.phase()
        tr.first_outcome = "finished" if tr.first_exit == 0 else _outcome(tr.first_exit, live.stderr, tr)

    def _second_writer(self, tr: Trial, rng: random.Random, ref: dict, path: Path, out: Path) -> None:
        tr.target_phase = rng.choice([p for p in KILL_PHASES if p in ref["windows"]])
        first = Live(worker_command(path))
        _wait_for(first, rng, ref, tr.target_phase)
        tr.phase = first.phase()
        second = Live(worker_command(path))
        code = second.wait()
        tr.detail = second.stderr.strip().splitlines()[-1][:160] if second.stderr.strip() else ""
        if first.p.poll() is None and not (code == 2 and "another run is writing" in second.stderr):
            tr.problems.append(f"the second writer was not refused while the first ran (exit {code})")
        if "Traceback" in second.stderr:
            tr.problems.append("the second writer printed a traceback")
        tr.first_exit = first.wait()
        tr.first_outcome = "finished" if tr.first_exit == 0 else _outcome(tr.first_exit, first.stderr, tr)

    def _parent_sigterm(self, tr: Trial, rng: random.Random, ref: dict, path: Path, out: Path) -> None:
        tr.target_phase = rng.choice([p for p in KILL_PHASES if p in ref["windows"]])
        parent = Live([sys.executable, str(Path(__file__)), "--panel-parent", str(path)])
        _wait_for(parent, rng, ref, tr.target_phase)
        tr.phase = parent.phase()
        pid = next((e["pid"] for _, e in parent.events if e.get("event") == "started"), None)
        parent.p.send_signal(signal.SIGTERM)
        parent.wait()
        if pid is None:                                    # the worker had not started yet
            tr.first_outcome, tr.detail = "stopped", "parent stopped before the worker started"
            return
        gone = _wait_gone(pid, 15)
        tr.first_outcome = "stopped" if gone else "orphan"
        tr.detail = f"worker {pid} {'stopped' if gone else 'still running'} after its parent's SIGTERM"
        if not gone:
            tr.problems.append("the worker kept running after its parent went away")
            os.kill(pid, signal.SIGKILL)

    # -- what must hold
    def _check_first(self, tr: Trial, out: Path, ref: dict) -> None:
        """After the fault: no folder that claims to be a result unless it is the whole one."""
        if out.exists() and not (complete(out) and phis(out) == ref["phi"]):
            tr.problems.append("a result folder that is not the complete result")

    def _recover(self, tr: Trial, path: Path, job, out: Path) -> None:
        from ShapSegExplainLib.panel.run_request import resume_run, saved_coalitions
        if tr.first_outcome == "finished":
            tr.recovery = "none"
            return
        if saved_coalitions(job) > 0:
            path, job = resume_run(path.parent, job)
            tr.recovery = "resumed"
        else:
            tr.recovery = "rerun"
        live = Live(worker_command(path))
        code = live.wait()
        if code == 2 and tr.recovery == "resumed":         # a journal the resume refuses (its header damaged)
            msg = live.stderr.strip().splitlines()[-1] if live.stderr.strip() else ""
            if "Traceback" in live.stderr or not msg.startswith("shapseg: error: --resume"):
                tr.problems.append(f"resume refused unclearly: {msg[:160]}")
            tr.recovery = "refused_then_rerun"
            path = replace(job, resume=False).write(path)
            live = Live(worker_command(path))
            code = live.wait()
        if code != 0:
            tail = live.stderr.strip().splitlines()[-1:] or [""]
            tr.problems.append(f"recovery failed (exit {code}): {tail[0][:200]}")

    def _check_final(self, tr: Trial, out: Path, ref: dict) -> None:
        if not complete(out):
            tr.problems.append("no complete result after recovery")
        elif phis(out) != ref["phi"]:
            tr.problems.append("φ differs from the uninterrupted run")
        if leftovers(out):
            tr.problems.append(f"left over: {leftovers(out)}")


def _watch_bytes(live: Live, folder: Path) -> int:
    """Peak bytes under ``folder`` while the run goes (journal + partial output)."""
    peak = 0
    while live.p.poll() is None:
        peak = max(peak, _du(folder))
        time.sleep(0.05)
    return max(peak, _du(folder))


def _du(folder: Path) -> int:
    total = 0
    for p in folder.rglob("*"):
        try:
            total += p.stat().st_size if p.is_file() else 0
        except OSError:
            pass
    return total


def _free(mount: Path) -> int:
    return shutil.disk_usage(mount).free


def _fill(mount: Path, leave: int) -> Path:
    """A filler file that leaves about ``leave`` bytes free on ``mount``."""
    filler = mount / ".filler"
    size = max(0, _free(mount) - leave)
    with open(filler, "wb") as f:
        f.truncate(0)
        chunk = b"\0" * (1 << 20)
        while size > 0:
            n = f.write(chunk[:min(size, len(chunk))])
            size -= n
    return filler


def _wait_for(live: Live, rng: random.Random, ref: dict, phase: str) -> None:
    """Return at a random moment of ``phase`` (uniform over its length in the reference run)."""
    order = [p for p in KILL_PHASES if p in ref["windows"]]
    start, end = ref["windows"][phase]
    deadline = time.perf_counter() + 600
    while live.p.poll() is None and time.perf_counter() < deadline:
        now = live.phase()
        if order.index(now) >= order.index(phase) if now in order else False:
            break
        time.sleep(0.005)
    time.sleep(rng.uniform(0, max(0.0, end - start)))


def _kill_in(live: Live, tr: Trial, rng: random.Random, ref: dict, sig: int) -> None:
    _wait_for(live, rng, ref, tr.target_phase)
    tr.phase = live.phase()
    if live.p.poll() is None:
        live.p.send_signal(sig)
    tr.first_exit = live.wait()
    tr.first_outcome = "finished" if tr.first_exit == 0 else _outcome(tr.first_exit, live.stderr, tr)


def _outcome(code: int, stderr: str, tr: Trial) -> str:
    """How the faulted run ended; a traceback or an unclear error is a problem."""
    if code < 0:
        return "killed"
    if "Traceback" in stderr:
        tr.problems.append("the faulted run printed a traceback")
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if code == 2 and last.startswith("shapseg: error: "):
        tr.detail = (tr.detail + "; " if tr.detail else "") + last[16:130]
        return "clear_error"
    if code in (130, 143):
        return "stopped"
    tr.problems.append(f"exit {code}: {last[:200]}")
    return "unclear_error"


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def panel_parent(job_path: str) -> None:
    """Stands in for Slicer: starts the worker through the panel layer and polls it from a loop
    (its events are passed on as they come, so the campaign sees where the run is)."""
    from ShapSegExplainLib.panel.worker_process import WorkerProcess, worker_command as command
    proc = WorkerProcess(command(sys.executable, job_path), cwd=ROOT).start()
    while not proc.finished:
        for event in proc.poll():
            if event.get("event") != "log":
                print(json.dumps(event), flush=True)
        time.sleep(0.02)


# ----- the table ---------------------------------------------------------------------------------------
def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root, and a kernel that lets it)."""
    probe = Path(tempfile.mkdtemp(prefix="crash_campaign_probe_"))
    try:
        mounted = mount_tmpfs(probe, 1)
        if mounted is not None:
            subprocess.run(["umount", str(mounted)], capture_output=True)
        return mounted is not None
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def mount_tmpfs(path: Path, mb: int) -> Path | None:
    """A small file system of its own, so that filling it fills nothing else."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m", "tmpfs", str(path)],
                       capture_output=True, text=True)
    return path if r.returncode == 0 else None


def table(trials: list[Trial]) -> str:
    rows = defaultdict(list)
    for t in trials:
        rows[(t.config, t.kind, t.phase)].append(t)
    lines = ["| config | fault | where it landed | trials | faulted run ended | next action | bitwise φ | failed |",
             "|---|---|---|---:|---|---|---:|---:|"]
    for (config, kind, phase), ts in sorted(rows.items()):
        ended = ", ".join(f"{k} {n}" for k, n in Counter(t.first_outcome for t in ts).items())
        nxt = ", ".join(f"{k} {n}" for k, n in Counter(t.recovery for t in ts).items())
        good = sum(t.ok for t in ts)
        lines.append(f"| {config} | {kind} | {phase} | {len(ts)} | {ended} | {nxt} | {good} | {len(ts) - good} |")
    n, ok = len(trials), sum(t.ok for t in trials)
    lines.append(f"| **all** | | | **{n}** | | | **{ok}** | **{n - ok}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--configs", nargs="+", default=["demo", "abdo7"])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parallel", type=int, default=2, help="trials side by side (each run on one thread)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "crash_campaign")
    ap.add_argument("--panel-parent", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.panel_parent:
        panel_parent(args.panel_parent)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="crash_campaign_"))
    mountable = can_mount()
    kinds = [k for k in args.kinds if k != "disk_full" or mountable]
    if len(kinds) < len(args.kinds):
        print("disk_full left out: cannot mount a tmpfs here (not root?)", file=sys.stderr)
    campaign = Campaign(work, args.configs)
    rng = random.Random(args.seed)
    plan = [(args.configs[i % len(args.configs)], kinds[(i // len(args.configs)) % len(kinds)],
             rng.randrange(1 << 30)) for i in range(args.trials)]
    trials: list[Trial] = []
    lock = threading.Lock()
    log = open(args.out / "trials.jsonl", "w")

    def one(item) -> None:
        tr = campaign.trial(*item)
        with lock:
            trials.append(tr)
            log.write(json.dumps(asdict(tr)) + "\n")
            log.flush()
            print(f"[{len(trials)}/{args.trials}] {tr.config} {tr.kind} at {tr.phase or '-'}: {tr.first_outcome} "
                  f"-> {tr.recovery} {'ok' if tr.ok else 'FAILED ' + '; '.join(tr.problems)} ({tr.seconds} s)",
                  flush=True)
    try:
        for config in args.configs:
            (work / config).mkdir(parents=True, exist_ok=True)
            ref = campaign.reference(config)
            print(f"{config}: reference {ref['seconds']:.1f} s, {ref['evaluations']} coalitions, "
                  f"{ref['bytes'] / 1e6:.1f} MB on disk at peak, phases {sorted(ref['windows'])}", flush=True)
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(args.parallel) as pool:      # trials drive subprocesses: threads suffice
            list(pool.map(one, plan))
    finally:
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    text = table(trials)
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    return 0 if all(t.ok for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
