"""A crafted checkpoint runs nothing: a ``checkpoint_final.pth`` whose unpickling would create
a file is refused (one line, exit code 2, nothing written) through the command line, the
worker and the panel's run path; with ``--trust-checkpoint`` it loads, and the file appears.
The demo's and the real ``abdo7-small`` checkpoints load safely."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from helpers import call_cli, write_job
from ShapSegExplainLib.nnunet.checkpoint import read_checkpoint
from shared_data import ABDO7, needs_shared

ROOT = Path(__file__).resolve().parents[2]
ABDO7_CHECKPOINT = ABDO7 / "fold_all" / "checkpoint_final.pth"


class Payload:
    """Unpickled, it opens (creates) ``path``: the stand-in for code a crafted file would run."""
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def crafted(model_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("crafted")
    folder = root / "model"
    shutil.copytree(model_dirs["one_fold"], folder)
    marker = root / "code_ran"
    path = next(folder.glob("fold_*/checkpoint_final.pth"))
    checkpoint = read_checkpoint(path)
    checkpoint["payload"] = Payload(str(marker))
    torch.save(checkpoint, path)
    return folder, marker


def test_shipped_and_real_checkpoints_load_safely():
    demo = read_checkpoint(ROOT / "ShapSegExplainLib" / "demo" / "model" / "fold_0" / "checkpoint_final.pth")
    assert demo["trainer_name"] and demo["network_weights"]


def test_the_real_abdo7_checkpoint_loads_safely():
    assert read_checkpoint(needs_shared(ABDO7_CHECKPOINT))["init_args"]["configuration"] == "3d_fullres"


def test_the_command_line_refuses_it_and_trusting_it_runs_it(crafted, tmp_path):
    folder, marker = crafted
    job = write_job(tmp_path, folder)                  # the synthetic CT, next to the job
    settings = json.loads(job.read_text())
    args = ["--ct", settings["ct"], "--model", folder, "--target", "liver", "--roi-box", "14,14,8,20,20,11"]
    r = call_cli("explain", *args, "--out", tmp_path / "result")
    assert r.returncode == 2 and not marker.exists() and not (tmp_path / "result").exists()
    errors = [line for line in r.stderr.splitlines() if line.startswith("shapseg: error:")]
    assert len(errors) == 1 and "'io.open'" in errors[0] and "--trust-checkpoint" in errors[0]   # names it
    assert "Traceback" not in r.stderr
    r = call_cli("inspect", *args, "--trust-checkpoint")
    assert r.returncode == 0, r.stderr
    assert marker.exists()                             # trusted: the pickle ran, as the user allowed
    marker.unlink()


def test_the_worker_and_the_panels_run_path_refuse_it(crafted, tmp_path):
    from slicer_helpers import poll_until
    from ShapSegExplainLib.panel.run_request import RunRequest, prepare_run
    from ShapSegExplainLib.panel.worker_events import RunState
    from ShapSegExplainLib.panel.worker_process import WorkerProcess, package_root, worker_command
    folder, marker = crafted
    ct = json.loads(write_job(tmp_path, folder).read_text())["ct"]
    request = RunRequest(ct=ct, model=str(folder), target="liver", region="box",
                         ras_bounds=[-20.0, 20.0, -20.0, 20.0, 0.0, 30.0], device="cpu")
    job, _ = prepare_run(tmp_path / "run", request)      # what the module writes, then starts
    w = WorkerProcess(worker_command(sys.executable, job), cwd=package_root()).start()
    state = RunState()
    poll_until(w, state, lambda seen: False, timeout=120)
    assert state.outcome == "error" and state.error_code == "unsafe_checkpoint", state.message
    assert "--trust-checkpoint" in state.message and w.returncode == 2
    assert not marker.exists() and not (tmp_path / "run" / "result").exists()
    trusted, _ = prepare_run(tmp_path / "trusted", RunRequest(**{**request.__dict__, "trust_checkpoint": True}))
    assert json.loads(trusted.read_text())["trust_checkpoint"] is True
    assert json.loads(job.read_text())["trust_checkpoint"] is False


@pytest.mark.parametrize("value", ["false", 1, None])
def test_a_job_file_must_say_trust_with_a_boolean(tmp_path, value, model_dirs):
    from ShapSegExplainLib.errors import ShapSegError
    from ShapSegExplainLib.run.job import ExplainJob
    with pytest.raises(ShapSegError, match="trust-checkpoint must be true or false"):
        ExplainJob(ct="ct.nii.gz", model="m", target="liver", out="o", roi_box=[1, 1, 1, 2, 2, 2],
                   trust_checkpoint=value).check()
