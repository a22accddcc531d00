"""Shared test helpers: synthetic CTs, nnU-Net reference runs, player maps."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import SimpleITK as sitk
import torch

from ShapSegExplainLib.nnunet.case import Case
from ShapSegExplainLib.run.job import ExplainJob
from ShapSegExplainLib.nnunet.evaluator import CoalitionEvaluator, RoiPlan, baseline_value
from fixtures.sampling import uniform_size_coalitions as random_coalitions  # noqa: F401


def synthetic_ct(shape_zyx=(20, 36, 36), spacing_xyz=(1.5, 1.5, 3.0), seed=0) -> sitk.Image:
    """A small body-like CT in HU: air, a soft-tissue ellipse, a few bright and dark blobs, noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape_zyx).astype(float)
    cz, cy, cx = (np.array(shape_zyx) - 1) / 2
    body = ((y - cy) / (0.45 * shape_zyx[1])) ** 2 + ((x - cx) / (0.42 * shape_zyx[2])) ** 2 < 1
    arr = np.where(body, 40.0, -1000.0)
    for _ in range(4):
        c = rng.uniform(0.25, 0.75, 3) * shape_zyx
        r = rng.uniform(2.5, 5.0)
        blob = ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) < r ** 2
        arr[blob & body] = rng.choice([-100.0, 150.0, 300.0])
    arr += rng.normal(0, 15, shape_zyx)
    img = sitk.GetImageFromArray(arr.astype(np.int16))
    img.SetSpacing(spacing_xyz)
    img.SetOrigin((-20.0, 10.0, 5.0))
    return img


def reference_logits(case: Case, data: np.ndarray | None = None) -> torch.Tensor:
    """nnU-Net's own logits for the whole preprocessed image (fold ensemble included)."""
    d = torch.from_numpy(case.data if data is None else data)
    return case.model.predictor.predict_logits_from_preprocessed_data(d)


def perturbed_data(ev: CoalitionEvaluator, coalition: np.ndarray, player_map: np.ndarray,
                   plan: RoiPlan, hu: float = -1024.0) -> np.ndarray:
    """The whole preprocessed image with the absent players' voxels set to the baseline."""
    absent_ids = np.flatnonzero(~coalition)
    on_image = plan.crop_to_image(player_map.astype(np.int64), -1)
    mask = np.isin(on_image, absent_ids) & (on_image >= 0)
    data = ev.case.data.copy()
    values = baseline_value(ev.model, hu)
    for c in range(data.shape[0]):
        data[c][mask] = values[c]
    return data



def run_cli(*args, timeout: int = 300) -> subprocess.CompletedProcess:
    """``shapseg ARGS`` in a fresh interpreter, as a user runs it (for what only a real process
    shows: the entry point, exit codes seen by a shell, nothing leaking into stdout)."""
    return subprocess.run([sys.executable, "-m", "ShapSegExplainLib.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def call_cli(*args) -> subprocess.CompletedProcess:
    """``shapseg ARGS`` in this interpreter (``cli.main``), with its exit code and captured
    stdout/stderr: the same result as ``run_cli`` without starting Python and torch again."""
    import contextlib
    import io

    from ShapSegExplainLib.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:             # argparse's usage errors
            code = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(["shapseg", *map(str, args)], code, out.getvalue(), err.getvalue())


def write_job(tmp_path, model_dir, **kw):
    """A small job file on the synthetic CT (FCC players, 40 coalitions), as the worker reads it."""
    ct = tmp_path / "ct.nii.gz"
    if not ct.exists():
        sitk.WriteImage(synthetic_ct(), str(ct))
    # no mirroring: these jobs test the run (events, signals, files), not the network, whose
    # mirroring is tested against nnU-Net in nnunet/test_exactness.py
    settings = dict(ct=str(ct), model=str(model_dir), target="liver", out=str(tmp_path / "out"),
                    roi_box=[14, 14, 8, 20, 20, 11], players="fcc", spacing_mm=10.0, margin_mm=4.0, budget=40,
                    device="cpu", faithfulness_steps=2, mirroring=False)
    settings.update(kw)
    return ExplainJob(**settings).write(tmp_path / "job.json")

