"""``shapseg worker JOB.json`` started as a real process: the event sequence on success, on
bad input, and on SIGTERM (a clean stop within a second, no result folder)."""
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import write_job


LIB = Path(__file__).resolve().parents[2] / "ShapSegExplainLib"
# What Slicer has: the package on its scripted-modules path, without pip's metadata.
AS_IN_SLICER = """import importlib.metadata as md, runpy, sys
def hidden(name, real=md.version):
    if name.lower() == "shapsegexplain":
        raise md.PackageNotFoundError(name)
    return real(name)
md.version = hidden
import ShapSegExplainLib
print("engine at", ShapSegExplainLib.__file__, file=sys.stderr)
runpy.run_module("ShapSegExplainLib.cli", run_name="__main__", alter_sys=True)
"""


def start_worker(job_file) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ShapSegExplainLib.cli", "worker", str(job_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_worker_as_in_slicer(job_file, modules: Path) -> subprocess.Popen:
    """The worker from a copy of the package in ``modules`` (Slicer's qt-scripted-modules),
    started there as the module starts it, with no package metadata to read."""
    shutil.copytree(LIB, modules / "ShapSegExplainLib", ignore=shutil.ignore_patterns("__pycache__", "model"))
    return subprocess.Popen([sys.executable, "-c", AS_IN_SLICER, "worker", str(job_file)], cwd=modules,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def events_of(stdout: str) -> list[dict]:
    """Every stdout line must be one JSON event."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_worker_success_event_sequence_as_in_slicer(tmp_path, model_dirs):
    import importlib.metadata

    import ShapSegExplainLib
    modules = tmp_path / "qt-scripted-modules"
    p = start_worker_as_in_slicer(write_job(tmp_path, model_dirs["one_fold"]), modules)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr[-2000:]
    assert f"engine at {modules / 'ShapSegExplainLib'}" in stderr
    events = events_of(stdout)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "result"
    assert kinds.count("result") == 1 and "error" not in kinds
    assert kinds.index("players") < kinds.index("partial")
    phases = [e["phase"] for e in events if e["event"] == "progress"]
    assert phases[0] == "load" and phases[-1] == "write" and "shapley" in phases
    for e in events:
        if e["event"] == "progress":
            assert 0 <= e["done"] <= e["total"]
    n = 0
    for e in events:                # coarse to fine: each level's players, then their φ
        if e["event"] == "players":
            n = len(e["players"])
        elif e["event"] == "partial":
            assert len(e["phi"]) == len(e["se"]) == n
    partials = [e for e in events if e["event"] == "partial"]
    assert partials and len(partials[-1]["phi"]) == n
    result = events[-1]
    assert result["out"] == str(tmp_path / "out")
    assert all(os.path.isfile(f) for f in result["files"].values())
    expl = json.loads(open(result["files"]["explanation"]).read())
    assert [p["phi"] for p in expl["players"]] == partials[-1]["phi"]
    # the one version source: what pip's metadata says, also where there is no metadata
    assert expl["version"] == ShapSegExplainLib.__version__ == importlib.metadata.version("shapsegexplain")


@pytest.mark.parametrize("problem, code", [
    ("missing_ct", "bad_input"),
    ("unknown_field", "bad_job"),
    ("not_json", "bad_job"),
    ("bad_target", "unknown_target"),
    ("bad_estimator", "bad_option"),
])
def test_worker_bad_input_gives_an_error_event(tmp_path, model_dirs, problem, code):
    job = write_job(tmp_path, model_dirs["one_fold"])
    data = json.loads(job.read_text())
    if problem == "missing_ct":
        data["ct"] = str(tmp_path / "nowhere.nii.gz")
    elif problem == "unknown_field":
        data["colour"] = "red"
    elif problem == "bad_target":
        data["target"] = "pancreas"
    elif problem == "bad_estimator":
        data["estimator"] = "magic"
    job.write_text("{oops" if problem == "not_json" else json.dumps(data))
    p = start_worker(job)
    stdout, stderr = p.communicate(timeout=120)
    events = events_of(stdout)
    assert p.returncode == 2, stderr[-2000:]
    assert events[0]["event"] == "started" and events[-1]["event"] == "error"
    assert "result" not in [e["event"] for e in events]
    err = events[-1]
    assert err["message"] and "Traceback" not in err["message"]
    if code != "bad_input":
        assert err["code"] == code, err
    else:
        assert "nowhere.nii.gz" in err["message"]
    assert not (tmp_path / "out").exists()


def test_worker_stops_cleanly_on_sigterm(tmp_path, model_dirs):
    # 44 players: sizes 1 and 43 are enumerated (88 coalitions), then batches of 8 up to 600, so the
    # first partial comes early and plenty of the run is left when the signal arrives
    job = write_job(tmp_path, model_dirs["one_fold"], budget=600, spacing_mm=6.0, threshold=1e-9,
                    coalition_batch=8, levels=1)          # the one flat game the comment describes
    p = start_worker(job)
    events, buffer = [], ""
    deadline = time.time() + 120
    while time.time() < deadline and not any(e["event"] == "partial" for e in events):
        ready, _, _ = select.select([p.stdout], [], [], 1.0)
        if ready:
            line = p.stdout.readline()
            if not line:
                break
            events.append(json.loads(line))
    if not any(e["event"] == "partial" for e in events):
        p.kill()
        pytest.fail("no partial event within 120 s: " + p.communicate()[1][-2000:])
    t0 = time.perf_counter()
    p.send_signal(signal.SIGTERM)
    while True:
        line = p.stdout.readline()
        if not line:
            break
        events.append(json.loads(line))
        if events[-1]["event"] == "cancelled":
            stopped = time.perf_counter() - t0
    p.wait(timeout=10)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, (stopped, elapsed)
    assert p.returncode == 143
    assert events[-1]["event"] == "cancelled"
    assert "result" not in [e["event"] for e in events]
    # no out, no partial folder; the journal stays, so the run can be resumed (run/test_resume.py)
    assert sorted(x.name for x in tmp_path.iterdir()) == [".out.journal", ".out.lock", "ct.nii.gz", "job.json"]
