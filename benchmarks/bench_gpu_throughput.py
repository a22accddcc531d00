"""Benchmark (≤ 5 min on one GPU): tile throughput of a TotalSegmentator-size network.

A random-weight nnU-Net v2 results folder with the shape of TotalSegmentator's 3d_fullres
plans (patch 128³, 1.5 mm, six stages of 32-64-128-256-320-320 features, a 24-class head
as one of its five "total" part models; random weights only measure speed), loaded by the
engine through ``nnUNetPredictor``. Reported, side by side in one run:

* the engine's ``forward_weighted`` at batch 1, 2, 4, 8, 16 under nnU-Net's autocast
  (with and without mirroring): tiles/s and peak GPU memory;
* the batch the engine chooses from memory (``--batch-size 0``: a probe forward on CUDA);
* nnU-Net's own ``predict_sliding_window_return_logits`` on an image of 2×2×2 tiles at
  step 1 (8 tiles, its own per-tile loop): tiles/s.

    python benchmarks/bench_gpu_throughput.py [--device cuda] [--seconds 10] [--quick]
    python benchmarks/bench_gpu_throughput.py --model ../shared/models/abdo7-small --device cpu --mirroring off

``--quick`` shrinks the network (patch 32×64×64) so that the script can be checked on a CPU;
``--model`` measures a real results folder instead (the trained ``abdo7-small`` on CPU).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))   # the model-folder fixture

from fixtures.model_folder import ModelSpec, write_model_folder  # noqa: E402
from ShapSegExplainLib.nnunet.model import load_model  # noqa: E402

TOTALSEG = dict(patch_size=(128, 128, 128), spacing=(1.5, 1.5, 1.5), features=(32, 64, 128, 256, 320, 320))
QUICK = dict(patch_size=(32, 64, 64), spacing=(3.0, 3.0, 3.0), features=(16, 32, 64, 128, 128))


def timed(fn, seconds: float, sync) -> tuple[int, float]:
    """Calls of ``fn`` for about ``seconds`` after one warm-up call: (calls, elapsed)."""
    fn()
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    sync()
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seconds", type=float, default=10.0, help="timing per setting")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--quick", action="store_true", help="a small network (a CPU check of the script)")
    ap.add_argument("--model", default=None, help="a real nnU-Net results folder instead of the random network")
    ap.add_argument("--mirroring", choices=("both", "off", "on"), default="both")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    shape = QUICK if args.quick else TOTALSEG
    labels = {"background": 0, **{f"class_{i}": i for i in range(1, 25)}}
    rows = []
    mirrorings = {"both": (False, True), "off": (False,), "on": (True,)}[args.mirroring]
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model or write_model_folder(Path(tmp) / "model", ModelSpec(labels=labels, **shape))
        for mirroring in mirrorings:
            model = load_model(folder, mirroring=mirroring, device=args.device)
            rows.append({"what": "batch from memory (--batch-size 0)", "mirroring": mirroring,
                         "batch": model.batch_size, "tiles_per_s": None, **model.batch_choice.as_dict()})
            print(json.dumps(rows[-1]), flush=True)
            for bs in args.batches:
                x = torch.randn(bs, 1, *model.patch_size)
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                try:
                    n, dt = timed(lambda: model.forward_weighted(x), args.seconds, sync)
                except torch.OutOfMemoryError:
                    rows.append({"what": "engine", "mirroring": mirroring, "batch": bs, "tiles_per_s": None,
                                 "note": "out of memory"})
                    break
                peak = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None
                rows.append({"what": "engine", "mirroring": mirroring, "batch": bs,
                             "tiles_per_s": round(n * bs / dt, 2), "peak_gib": peak and round(peak, 2)})
                print(json.dumps(rows[-1]), flush=True)
            image = torch.randn(1, *[2 * p for p in model.patch_size])
            model.predictor.tile_step_size = 1.0
            n, dt = timed(lambda: model.predictor.predict_sliding_window_return_logits(image), args.seconds, sync)
            rows.append({"what": "nnUNetPredictor", "mirroring": mirroring, "batch": 1,
                         "tiles_per_s": round(8 * n / dt, 2)})
            print(json.dumps(rows[-1]), flush=True)
    print("| what | mirroring | batch | tiles/s | peak GiB |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['mirroring']} | {r['batch']} | {r['tiles_per_s']} | {r.get('peak_gib')} |")


if __name__ == "__main__":
    main()
