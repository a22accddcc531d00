"""Train the demo nnU-Net model on generated phantoms with nnU-Net's own planning,
preprocessing and trainer (CPU is fine), and copy the results folder to ``--out``.

Steps: phantoms (``ShapSegExplainLib.demo.phantom``, seeded, no mimics) written as an nnU-Net
raw dataset; ``extract_fingerprints`` / ``plan_experiments`` / ``preprocess`` from
nnU-Net's API; the plan's network made small (features per stage capped) so a CPU
trains it in minutes; ``nnUNetTrainer_<N>epochs`` (a trainer nnU-Net finds by name at
inference) with fewer iterations per epoch; then the results folder (plans, dataset,
fingerprint, fold_0/checkpoint_final.pth) copied out. Run:
  python scripts/train_demo_model.py --out ShapSegExplainLib/demo/model [--cases 16] [--epochs 20] [--iterations 50]
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk

DATASET_ID, DATASET_NAME = 901, "Dataset901_ShapSegPhantom"


def write_raw(raw: Path, n_cases: int, spacing) -> dict:
    from ShapSegExplainLib.demo.phantom import LABELS, make_phantom
    folder = raw / DATASET_NAME
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    for i in range(n_cases):
        ph = make_phantom(seed=1000 + i, spacing=spacing)
        sitk.WriteImage(ph.ct, str(folder / "imagesTr" / f"phantom_{i:03d}_0000.nii.gz"))
        sitk.WriteImage(ph.labels, str(folder / "labelsTr" / f"phantom_{i:03d}.nii.gz"))
    dataset = {"channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": n_cases, "file_ending": ".nii.gz",
               "name": "ShapSegExplain demo phantoms"}
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    return dataset


def shrink_plans(preprocessed: Path, max_features: int, patch: list[int] | None) -> None:
    """Cap the features per stage of 3d_fullres and optionally set its patch size (a
    multiple of the network's total stride per axis); nothing else of nnU-Net's plan changes."""
    f = preprocessed / DATASET_NAME / "nnUNetPlans.json"
    plans = json.loads(f.read_text())
    cfg = plans["configurations"]["3d_fullres"]
    arch = cfg["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = [min(int(x) // 4, max_features) for x in arch["features_per_stage"]]
    if patch:
        stride = [1, 1, 1]
        for s in arch["strides"]:
            stride = [a * int(b) for a, b in zip(stride, s)]
        if any(p % s for p, s in zip(patch, stride)):
            raise SystemExit(f"--patch {patch} must be a multiple of the network's total stride {stride}")
        cfg["patch_size"] = list(patch)
    f.write_text(json.dumps(plans, indent=2))


def export(result: Path, out: Path, checkpoint: str, recipe: dict) -> None:
    """Copy plans, dataset, fingerprint and fold 0's ``checkpoint`` (as checkpoint_final.pth,
    without the optimizer state) plus ``training.json`` to ``out``, atomically."""
    import torch
    tmp_out = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp_out, ignore_errors=True)
    (tmp_out / "fold_0").mkdir(parents=True)
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        shutil.copy2(result / name, tmp_out / name)
    ckpt = torch.load(result / "fold_0" / checkpoint, map_location="cpu", weights_only=False)
    ckpt.pop("optimizer_state", None)  # not needed for inference; a third of the size
    ckpt.pop("grad_scaler_state", None)
    recipe = {**recipe, "checkpoint": checkpoint, "epochs_done": int(ckpt.get("current_epoch", -1)),
              "best_ema_pseudo_dice": float(ckpt.get("_best_ema") or float("nan"))}
    torch.save(ckpt, tmp_out / "fold_0" / "checkpoint_final.pth")
    (tmp_out / "training.json").write_text(json.dumps(recipe, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp_out.rename(out)
    print(f"model: {out} ({sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 2**20:.1f} MiB)")


def export_stopped(args) -> int:
    """``--export-only``: export a run stopped early (its ``checkpoint_best.pth``) from ``--work``."""
    results = sorted((Path(args.work) / "nnUNet_results" / DATASET_NAME).glob("*__nnUNetPlans__3d_fullres"))
    if not results:
        raise SystemExit(f"no nnU-Net results under {args.work}")
    recipe = {"command": f"python scripts/train_demo_model.py --out {args.out} --cases {args.cases} --epochs "
                         f"{args.epochs} --iterations {args.iterations}" + (f" --patch {' '.join(map(str, args.patch))}"
                                                                             if args.patch else ""),
              "cases": args.cases, "spacing_mm": args.spacing, "max_features": args.max_features,
              "trainer": results[-1].name.split("__")[0], "epochs": args.epochs, "iterations": args.iterations,
              "stopped_early": True, "train_seconds": args.train_seconds, "machine": f"{os.cpu_count()} CPU cores"}
    export(results[-1], Path(args.out), "checkpoint_best.pth", recipe)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=20, choices=[1, 5, 10, 20, 50, 100])
    ap.add_argument("--iterations", type=int, default=50, help="training iterations per epoch")
    ap.add_argument("--spacing", type=float, default=3.0, help="isotropic phantom spacing in mm")
    ap.add_argument("--max-features", type=int, default=64)
    ap.add_argument("--patch", type=int, nargs=3, default=None, help="patch size z y x (default: nnU-Net's plan)")
    ap.add_argument("--work", default=None, help="keep nnU-Net's folders here (default: a temp folder)")
    ap.add_argument("--export-only", action="store_true",
                    help="export a run in --work that was stopped early (its best checkpoint) and exit")
    ap.add_argument("--train-seconds", type=int, default=None, help="with --export-only: training time to record")
    args = ap.parse_args(argv)
    if args.export_only:
        return export_stopped(args)
    work = Path(args.work or tempfile.mkdtemp(prefix="shapseg_train_"))
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[name] = str(work / name)
        (work / name).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("nnUNet_n_proc_DA", "2")
    t0 = time.perf_counter()
    write_raw(work / "nnUNet_raw", args.cases, (args.spacing,) * 3)
    print(f"phantoms written: {time.perf_counter() - t0:.0f} s", flush=True)

    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                       preprocess)
    from nnunetv2.run.run_training import get_trainer_from_args
    extract_fingerprints([DATASET_ID], num_processes=2, check_dataset_integrity=True, verbose=False)
    plan_experiments([DATASET_ID])
    shrink_plans(work / "nnUNet_preprocessed", args.max_features, args.patch)
    preprocess([DATASET_ID], configurations=("3d_fullres",), num_processes=(2,))
    print(f"planned and preprocessed: {time.perf_counter() - t0:.0f} s", flush=True)

    trainer = get_trainer_from_args(str(DATASET_ID), "3d_fullres", 0, f"nnUNetTrainer_{args.epochs}epochs"
                                    if args.epochs != 1 else "nnUNetTrainer_1epoch", "nnUNetPlans",
                                    device=torch.device("cpu"))
    trainer.num_iterations_per_epoch = args.iterations
    trainer.num_val_iterations_per_epoch = max(5, args.iterations // 5)
    trainer.run_training()
    print(f"trained: {time.perf_counter() - t0:.0f} s", flush=True)

    recipe = {"command": "python scripts/train_demo_model.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "cases": args.cases, "spacing_mm": args.spacing, "max_features": args.max_features,
              "trainer": trainer.__class__.__name__, "epochs": args.epochs, "iterations": args.iterations,
              "train_seconds": round(time.perf_counter() - t0), "machine": f"{os.cpu_count()} CPU cores",
              "torch": torch.__version__, "nnunetv2": importlib.metadata.version("nnunetv2")}
    export(Path(trainer.output_folder_base), Path(args.out), "checkpoint_final.pth", recipe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
