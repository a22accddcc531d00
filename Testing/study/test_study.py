"""``shapseg study``: manifests (YAML and CSV, one meaning), bad manifests refused before any
work, and the Dask runs: a worker killed during a task, a rerun after Ctrl-C, and the same
study on a scheduler and worker started as separate processes.

The cluster tests use the small random-weight model on the synthetic CT: they test the study's
processes, files and counts, not the network (the demo study runs the trained demo model)."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from helpers import call_cli, synthetic_ct
from ShapSegExplainLib.study.manifest import read_manifest

BOXES = {"a": [14, 14, 8, 20, 20, 11], "b": [12, 16, 6, 18, 22, 10], "c": [16, 12, 9, 22, 18, 12]}
DEFAULTS = dict(target="liver", players="fcc", spacing_mm=10.0, margin_mm=4.0, budget=40, device="cpu",
                faithfulness_steps=2, mirroring=False)


# 44 flat players, 160 coalitions in chunks of 8: long enough to be killed mid-sampling (as in run/test_resume.py)
LONG = dict(budget=160, spacing_mm=6.0, threshold=1e-9, coalition_batch=8, levels=1)


def write_study(folder: Path, model_dir, cases=("a", "b"), values=("soft_dice", "tp"), broken: bool = False,
                long_first: bool = False) -> Path:
    """A YAML manifest on the synthetic CT: the cases × a grid over the value function;
    ``broken`` adds a case whose anatomy label names are not JSON (found when a worker reads
    them); ``long_first`` makes the first case's explanations ``LONG``."""
    folder.mkdir(parents=True, exist_ok=True)
    ct = synthetic_ct()
    sitk.WriteImage(ct, str(folder / "ct.nii.gz"))
    manifest = {"defaults": {**DEFAULTS, "model": str(model_dir)}, "grid": {"value": list(values)},
                "cases": [{"id": c, "ct": "ct.nii.gz", "roi_box": BOXES[c]} for c in cases]}
    if long_first:
        manifest["cases"][0].update(LONG)
    if broken:
        sitk.WriteImage(sitk.Cast(ct > 0, sitk.sitkUInt8), str(folder / "labels.nii.gz"))
        (folder / "labels.json").write_text("{not json")
        manifest["cases"].append({"id": "broken", "ct": "ct.nii.gz", "roi_box": BOXES["a"],
                                  "anatomy": "labels.nii.gz", "anatomy_labels": "labels.json"})
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def study_process(manifest: Path, out: Path, *extra) -> subprocess.Popen:
    """``shapseg study`` as a user's process; Ctrl-C (SIGINT) reaches it as in a terminal even
    when the tests run in the background (where a shell starts them with SIGINT ignored)."""
    return subprocess.Popen([sys.executable, "-m", "ShapSegExplainLib.cli", "study", str(manifest), "--out", str(out),
                             *map(str, extra)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the study ended first: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("timed out")


def table(out: Path) -> list[dict]:
    with open(out / "study.csv") as f:
        return list(csv.DictReader(f))


def phis(folder) -> list[float]:
    return [p["phi"] for p in json.loads((Path(folder) / "explanation.json").read_text())["players"]]


def assert_complete(out: Path, rows: list[dict]) -> None:
    """Every finished folder holds every file it lists, its φ add up, and no partial folder,
    journal or temporary file is left beside it."""
    for r in rows:
        folder = Path(r["folder"])
        expl = json.loads((folder / "explanation.json").read_text())
        assert all((folder / f).is_file() for f in expl["files"].values()), r["setting"]
        assert abs(sum(phis(folder)) - (expl["full_value"] - expl["base_value"])) < 1e-6
        assert not [p.name for p in folder.parent.iterdir() if p.name.startswith(".") and
                    not p.name.endswith(".lock")], folder.parent
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".state"]


# ----- manifests ----------------------------------------------------------------------------------
def test_yaml_and_csv_manifests_expand_to_the_same_explanations(tmp_path, model_dirs):
    manifest = write_study(tmp_path, model_dirs["one_fold"])
    from_yaml = read_manifest(manifest, tmp_path / "out")
    assert [t.key for t in from_yaml] == ["a/value-soft_dice", "a/value-tp", "b/value-soft_dice", "b/value-tp"]
    cols = ["id", "ct", "roi_box", "value", *DEFAULTS, "model"]
    rows = [{"id": c, "ct": "ct.nii.gz", "roi_box": ",".join(map(str, BOXES[c])), "value": "soft_dice|tp",
             **{k: v for k, v in DEFAULTS.items()}, "model": model_dirs["one_fold"]} for c in ("a", "b")]
    with open(tmp_path / "study.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    from_csv = read_manifest(tmp_path / "study.csv", tmp_path / "out")
    assert [(t.key, t.job) for t in from_csv] == [(t.key, t.job) for t in from_yaml]
    job = from_yaml[1].job
    assert job["value"] == "tp" and job["ct"] == str((tmp_path / "ct.nii.gz").resolve())
    assert job["out"] == str(tmp_path / "out" / "a" / "value-tp") and job["budget"] == 40


BAD = [  # (what, change to the YAML manifest, or CSV text, expected message part)
    ("missing file", {"cases": [{"id": "a", "ct": "ct.nii.gz", "roi_box": BOXES["a"]},
                                {"id": "b", "ct": "nope.nii.gz", "roi_box": BOXES["b"]}]},
     "row 2 (case 'b'): ct not found: "),
    ("unknown column", "id,ct,roi_box,playerz\na,ct.nii.gz,\"14,14,8,20,20,11\",organ\n",
     "row 1 (the header): unknown column 'playerz'"),
    ("unknown field", {"cases": [{"id": "a", "ct": "ct.nii.gz", "roi_box": BOXES["a"], "valeu": "dice"}]},
     "row 1 (case 'a'): unknown field 'valeu'"),
    ("ROI outside the CT", {"cases": [{"id": "a", "ct": "ct.nii.gz", "roi_box": BOXES["a"]},
                                      {"id": "b", "ct": "ct.nii.gz", "roi_box": [14, 14, 8, 20, 40, 11]}]},
     "row 2 (case 'b'): roi_box [14, 14, 8, 20, 40, 11] lies outside the CT (size [36, 36, 20] voxels)"),
    ("ROI of 5 numbers", "id,ct,roi_box\na,ct.nii.gz,\"14,14,8,20,20\"\n",
     "row 2 (case 'a'): 'roi_box' needs 6 numbers"),
    ("two ROIs", {"cases": [{"id": "a", "ct": "ct.nii.gz", "roi_box": BOXES["a"], "roi_point": [15, 15, 9]}]},
     "row 1 (case 'a'), setting value-soft_dice: give exactly one ROI"),
    ("mask of another size", {"cases": [{"id": "a", "ct": "ct.nii.gz", "roi_box": BOXES["a"], "reference": "small.nii.gz"}]},
     "row 1 (case 'a'): the reference image's size differs from the CT's [36, 36, 20]"),
    ("duplicate case id", {"cases": [{"id": "a", "ct": "ct.nii.gz", "roi_box": BOXES["a"]},
                                     {"id": "b", "ct": "ct.nii.gz", "roi_box": BOXES["b"]},
                                     {"id": "a", "ct": "ct.nii.gz", "roi_box": BOXES["c"]}]},
     "row 3 (case 'a'): duplicate case id (also row 1)"),
    ("unknown target", {"cases": [{"id": "a", "ct": "ct.nii.gz", "roi_box": BOXES["a"], "target": "lung"}]},
     "row 1 (case 'a'): target 'lung' is not a label of the model"),
    ("bad choice in the grid", {"grid": {"value": ["dice", "dise"]}},
     "row 1 (case 'a'), setting value-dise: value must be one of"),
]


@pytest.mark.parametrize("what,change,expected", BAD, ids=[b[0] for b in BAD])
def test_a_bad_manifest_is_refused_in_one_line_naming_its_row_before_any_work(tmp_path, model_dirs, what, change,
                                                                            expected):
    manifest = write_study(tmp_path, model_dirs["one_fold"], cases=("a",))
    sitk.WriteImage(synthetic_ct(shape_zyx=(20, 30, 36)), str(tmp_path / "small.nii.gz"))
    if isinstance(change, str):         # a CSV manifest: the defaults as columns would hide the point; add them
        manifest = tmp_path / "study.csv"
        lines = change.splitlines()
        extra = {**DEFAULTS, "model": model_dirs["one_fold"], "value": "soft_dice"}
        manifest.write_text("\n".join([lines[0] + "," + ",".join(extra)]
                                      + [line + "," + ",".join(map(str, extra.values())) for line in lines[1:]]) + "\n")
    else:
        data = yaml.safe_load(manifest.read_text())
        manifest.write_text(yaml.safe_dump({**data, **change}))
    out = tmp_path / "out"
    r = call_cli("study", manifest, "--out", out)
    assert r.returncode == 2, r
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"shapseg: error: study manifest {manifest.name}, ") and expected in r.stderr, r.stderr
    assert not out.exists()             # nothing was started or written


def test_without_dask_a_study_says_what_to_install_in_one_line(tmp_path, model_dirs, monkeypatch):
    import importlib.util
    manifest = write_study(tmp_path, model_dirs["one_fold"], cases=("a",))
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else find(name, *a))
    r = call_cli("study", manifest, "--out", tmp_path / "out")
    assert r.returncode == 2 and r.stderr == ("shapseg: error: shapseg study needs distributed: "
                                              "pip install 'shapsegexplain[study]'\n")
    assert not (tmp_path / "out").exists()


def test_a_study_refuses_a_folder_that_is_not_a_study(tmp_path, model_dirs):
    manifest = write_study(tmp_path, model_dirs["one_fold"], cases=("a",))
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("keep")
    r = call_cli("study", manifest, "--out", tmp_path / "theirs")
    assert r.returncode == 2 and "is not a study folder" in r.stderr and r.stderr.count("\n") == 1
    assert [p.name for p in (tmp_path / "theirs").iterdir()] == ["notes.txt"]


def test_a_local_cluster_has_a_worker_per_gpu_or_per_core_as_memory_allows(monkeypatch):
    import psutil
    import torch

    from ShapSegExplainLib.study.runner import plan_cluster
    gib = 2 ** 30
    memory = lambda n: type("M", (), {"available": n * gib})()          # noqa: E731
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(100))
    plan = plan_cluster(40, 0.8)                                 # a single-threaded worker per core
    assert (plan.workers, plan.threads, plan.memory_gb) == (16, 1, 5.0)
    assert plan_cluster(3, 0.8).workers == 3                     # no more workers than tasks
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(10))
    plan = plan_cluster(40, 0.8)                                 # 0.8 · 10 GiB holds 4 workers of 2 GiB
    assert (plan.workers, plan.threads, plan.memory_gb) == (4, 4, 2.0) and "at most 4" in plan.why
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    plan = plan_cluster(40, 0.8)                                 # one worker per GPU
    assert (plan.workers, plan.threads, plan.gpus) == (2, 8, 2)


# ----- on a cluster -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def killed_study(tmp_path_factory, model_dirs):
    """The study on a 2-worker local cluster; the first worker process whose explanation has
    journaled coalitions is killed (SIGKILL), mid-sampling."""
    folder = tmp_path_factory.mktemp("killed")
    manifest = write_study(folder, model_dirs["one_fold"], broken=True, long_first=True)
    out = folder / "study"
    proc = study_process(manifest, out, "--workers", 2)
    journal = wait_for(lambda: next((p for p in out.glob("a/.*.journal") if (p / "values.bin").is_file()
                                     and (p / "values.bin").stat().st_size), None), proc)
    key = "a/" + journal.name[1:-len(".journal")]
    pid = int((out / ".state" / f"{key.replace('/', '__')}.attempts").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    return {"manifest": manifest, "out": out, "killed": key, "pid": pid, "code": proc.returncode,
            "stdout": stdout, "stderr": stderr}


@pytest.mark.slow
def test_a_worker_killed_during_a_task_costs_only_a_retry_of_that_task(killed_study):
    out = killed_study["out"]
    assert killed_study["code"] == 1, killed_study["stderr"]          # 1: some explanations failed
    assert "6 explanations: 4 computed, 0 reused (finished before), 2 failed" in killed_study["stdout"]
    rows = table(out)
    assert [r["status"] for r in rows] == ["done"] * 4 + ["failed"] * 2
    tries = {f"{r['case']}/{r['setting']}": int(r["attempts"]) for r in rows}
    assert tries.pop(killed_study["killed"]) == 2 and set(tries.values()) == {1}   # bad input is not retried
    # the retry went on from the killed attempt's journal (its φ equals an uninterrupted run's:
    # the scheduler test below)
    assert [r["resumed"] for r in rows[:4]] == ["True" if f"{r['case']}/{r['setting']}" == killed_study["killed"]
                                                else "False" for r in rows[:4]]
    for r in rows[4:]:          # a case's own bad input: its one line, in the table and printed
        assert "labels.json is not valid JSON" in r["error"] and not Path(r["folder"]).exists()
        assert f"failed: broken/{r['setting']}: label file" in killed_study["stdout"]
    assert "## Failed" in (out / "study.md").read_text()
    pids = {int(line.split()[0]) for p in (out / ".state").glob("*.attempts") for line in p.read_text().splitlines()}
    assert killed_study["pid"] in pids and len(pids) >= 2     # the retry ran in another (restarted) process
    # each worker process loaded the model once and reused it for its next tasks
    finishers = {r["worker_pid"] for r in rows}
    assert [r["model_loaded"] for r in rows].count("True") == len(finishers) < len(rows)
    assert_complete(out, rows[:4])


@pytest.mark.slow
def test_the_report_is_read_from_the_explanations_and_aggregates_them(killed_study):
    out = killed_study["out"]
    rows = [r for r in table(out) if r["status"] == "done"]
    for r in rows:
        expl = json.loads((Path(r["folder"]) / "explanation.json").read_text())
        assert int(r["tile_forwards"]) == expl["stats"]["tile_forwards"] and int(r["M"]) == len(expl["players"])
        assert float(r["aopc"]) == pytest.approx(expl["faithfulness"]["aopc"])
    with open(out / "aggregates.csv") as f:
        aggs = {(a["players"], a["value"]): a for a in csv.DictReader(f)}
    for value in ("soft_dice", "tp"):
        fw = [int(r["tile_forwards"]) for r in rows if r["value"] == value]
        a = aggs[("fcc", value)]
        assert int(a["n"]) == 2 and float(a["tile_forwards_mean"]) == pytest.approx(np.mean(fw))
        assert float(a["tile_forwards_sd"]) == pytest.approx(np.std(fw, ddof=1))
    md = (out / "study.md").read_text()
    assert "| fcc | tp | 2 |" in md and "4 done, 2 failed." in md
    for name in ("tradeoff.png", "cost.png", "thumbnails.png"):
        h, w = sitk.ReadImage(str(out / name)).GetSize()[::-1][:2]
        assert h > 300 and w > 300 and f"]({name})" in md


@pytest.mark.slow
def test_a_rerun_after_an_interruption_recomputes_nothing_that_had_finished(tmp_path, model_dirs):
    manifest = write_study(tmp_path, model_dirs["one_fold"])
    out = tmp_path / "study"
    proc = study_process(manifest, out, "--workers", 1)
    wait_for(lambda: list(out.glob("*/*/explanation.json")), proc)
    proc.send_signal(signal.SIGINT)                       # Ctrl-C
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run the same command again to go on" in stderr, stderr
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*/explanation.json")}
    assert 1 <= len(before) < 4
    assert sorted(r["status"] for r in table(out)).count("done") == len(before)
    r = call_cli("study", manifest, "--out", out, "--workers", 1)
    assert r.returncode == 0, r.stderr
    assert f"4 explanations: {4 - len(before)} computed, {len(before)} reused" in r.stdout
    assert {p: p.stat().st_mtime_ns for p in before} == before           # not one finished file touched
    rows = table(out)
    assert sorted(r["status"] for r in rows) == sorted(["reused"] * len(before) + ["done"] * (4 - len(before)))
    assert_complete(out, rows)


@pytest.mark.slow
def test_the_same_study_on_a_separately_started_scheduler_and_worker_gives_identical_phi(tmp_path, killed_study,
                                                                                        model_dirs):
    """The explanation whose worker was killed, run again uninterrupted on a scheduler and a
    worker started as separate processes (``dask scheduler``, ``dask worker``): its φ are those
    of the killed-and-resumed run, bit for bit. Only that explanation runs here (the others
    say nothing more about either claim)."""
    case, setting = killed_study["killed"].split("/")
    value = setting.split("value-", 1)[1]
    manifest = write_study(tmp_path / "inputs", model_dirs["one_fold"], cases=(case,), values=(value,),
                           long_first=True)
    dask = Path(sys.executable).with_name("dask")
    scheduler_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([dask, "scheduler", "--scheduler-file", scheduler_file, "--port", "0",
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_for(scheduler_file.is_file, procs[0], timeout=60)
        procs.append(subprocess.Popen([dask, "worker", "--scheduler-file", scheduler_file, "--nworkers", "1",
                                       "--nthreads", "1", "--no-dashboard"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        out = tmp_path / "external"
        r = call_cli("study", manifest, "--out", out, "--scheduler", scheduler_file)
    finally:
        for p in procs[::-1]:
            p.terminate()
            p.wait(timeout=60)
    assert r.returncode == 0 and "1 explanations: 1 computed, 0 reused (finished before), 0 failed" in r.stdout, \
        r.stderr
    assert f"cluster at {scheduler_file}" in r.stderr
    [external] = table(out)
    assert external["resumed"] == "False" and f"{external['case']}/{external['setting']}" == killed_study["killed"]
    [local] = [x for x in table(killed_study["out"]) if f"{x['case']}/{x['setting']}" == killed_study["killed"]]
    assert local["resumed"] == "True"
    assert phis(external["folder"]) == phis(local["folder"])            # identical, not close
