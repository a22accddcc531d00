"""Benchmark: tile forwards and wall time of the roi / paper / memo strategies, side by side.

On the real CT in ../shared/data/totalseg-example with a random-weight nnU-Net model
(nnU-Net's own format and code) whose tile grid has several tiles across the ROI.
Players are the project's own abstractions (``players_for_case``) with the
TotalSegmentator map as anatomy: organ units (few per tile), FCC and hybrid
supervoxels (many per tile); coalitions of uniform size or KernelSHAP-like (full,
empty, sizes 1 and M-1, then pairs). Also measures forwards per second by batch size
and checks channels-last 3D. Run:
  python benchmarks/bench_engine.py [--coalitions 96] [--players organ fcc hybrid] [--only-throughput]
"""
from __future__ import annotations

import sys

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))   # test fixtures (games, model folders)

from ShapSegExplainLib.choices import PLAYERS
from ShapSegExplainLib.nnunet.case import prepare_case
from ShapSegExplainLib.nnunet.evaluator import CoalitionEvaluator, plan_roi
from ShapSegExplainLib.nnunet.model import load_model
from fixtures.model_folder import ModelSpec, write_model_folder
from ShapSegExplainLib.players.maps import PlayerSettings, anatomy_for_case, players_for_case
from fixtures.sampling import uniform_size_coalitions

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalseg-example"
SPEC = ModelSpec(labels={"background": 0, "kidney_left": 1, "liver": 2, "spleen": 3},
                 patch_size=(32, 48, 48), spacing=(3.0, 3.0, 3.0), features=(8, 16, 32, 64), seed=7)


def kernelshap_like(rng, k, m):
    """What KernelSHAP asks first: the full and empty coalitions, every size-1 and size-(M-1)
    coalition, then paired samples (a coalition and its complement) of uniform size."""
    eye = np.eye(m, dtype=bool)
    rows = [np.ones((1, m), bool), np.zeros((1, m), bool), eye, ~eye]
    rest = uniform_size_coalitions(rng, max(0, (k - 2 - 2 * m) // 2), m)
    rows += [rest, ~rest]
    return np.concatenate(rows)[:max(k, 2 + 2 * m)]


def run_strategy(model, case, plan, pmap, m, strategy, coalitions, batch):
    ev = CoalitionEvaluator(model, case, plan, pmap, m, strategy=strategy)
    t0 = time.perf_counter()
    outs = [ev.evaluate(coalitions[i:i + batch]) for i in range(0, len(coalitions), batch)]
    return torch.cat(outs), time.perf_counter() - t0, ev


def bench_players(name, model, case, plan, pmap, m, coalitions, batch):
    ev_probe = CoalitionEvaluator(model, case, plan, pmap, m)
    ppt = ev_probe.players_per_tile()
    print(f"\n== {name}: {m} players, players per ROI tile: mean {np.mean(ppt):.1f} (min {min(ppt)}, max {max(ppt)})")
    print(f"{'strategy':>8} {'coalitions':>10} {'forwards':>9} {'lower bd':>9} {'roi would':>9} "
          f"{'whole img':>9} {'hits':>7} {'seconds':>8} {'x faster':>8} {'peak MB':>8}")
    rows, ref, t_roi = {}, None, None
    for strategy in ("roi", "paper", "memo"):
        out, secs, ev = run_strategy(model, case, plan, pmap, m, strategy, coalitions, batch)
        if ref is None:
            ref, t_roi = out, secs
        assert torch.equal(out, ref), f"{strategy} differs from roi"
        c = ev.counters.as_dict()
        rows[strategy] = {**c, "wall_seconds": secs, "speedup_vs_roi": t_roi / secs}
        print(f"{strategy:>8} {c['coalitions']:>10} {c['tile_forwards']:>9} {c['distinct_states']:>9} "
              f"{c['tile_forwards_roi']:>9} {c['tile_forwards_whole_image']:>9} {c['cache_hits']:>7} "
              f"{secs:>8.2f} {t_roi / secs:>8.2f} {c['peak_cache_bytes'] / 2**20:>8.1f}")
    f = {s: r["tile_forwards"] for s, r in rows.items()}
    assert f["memo"] <= f["paper"] <= f["roi"] and f["memo"] == rows["memo"]["distinct_states"]
    print("   identical outputs: yes; memo forwards == distinct (tile, absent-in-tile) states: yes")
    print("   memo phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in rows["memo"]["seconds"].items()))
    return {"players": m, "players_per_tile": ppt, "strategies": rows}


def forwards_per_second(model, plan, case, sizes=(1, 2, 4, 8), n=16):
    ev = CoalitionEvaluator(model, case, plan, np.full(plan.crop_shape, -1), 1)
    x = ev.tile_inputs[0]
    out = {}
    for bs in sizes:
        batch = torch.stack([x] * bs)
        model.forward_weighted(batch)
        t0 = time.perf_counter()
        for _ in range(max(1, n // bs)):
            model.forward_weighted(batch)
        out[bs] = max(1, n // bs) * bs / (time.perf_counter() - t0)
    return out


def channels_last_check(model, plan, case, bs=4, n=16):
    """Channels-last 3D against the default layout: tiles/s and the largest output difference."""
    import copy
    ev = CoalitionEvaluator(model, case, plan, np.full(plan.crop_shape, -1), 1)
    x = torch.stack([ev.tile_inputs[0]] * bs)
    plain = model.networks[0]
    cl = copy.deepcopy(plain).to(memory_format=torch.channels_last_3d)
    xcl = x.contiguous(memory_format=torch.channels_last_3d)
    out = {}
    with torch.inference_mode():
        for name, net, inp in (("default", plain, x), ("channels_last_3d", cl, xcl)):
            net(inp)
            t0 = time.perf_counter()
            for _ in range(n // bs):
                y = net(inp)
            out[name] = {"tiles_per_s": (n // bs) * bs / (time.perf_counter() - t0), "y": y}
    diff = float((out["default"]["y"] - out["channels_last_3d"]["y"]).abs().max())
    return {k: v["tiles_per_s"] for k, v in out.items()} | {"max_abs_diff": diff}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coalitions", type=int, default=96)
    ap.add_argument("--batch", type=int, default=32, help="coalitions per evaluate() call")
    ap.add_argument("--mirroring", action="store_true", help="with mirroring TTA (8 passes per tile)")
    ap.add_argument("--players", nargs="+", default=["organ", "fcc", "hybrid"], choices=PLAYERS)
    ap.add_argument("--samplers", nargs="+", default=["uniform", "kernelshap"], choices=["uniform", "kernelshap"])
    ap.add_argument("--json", default=None)
    ap.add_argument("--only-throughput", action="store_true", help="skip the strategy comparison")
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU")
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_model_folder(Path(tmp) / "model", SPEC)
        model = load_model(folder, mirroring=args.mirroring, device="cpu", batch_size=4)
        case = prepare_case(DATA / "ct.nii.gz", model)
        seg = sitk.ReadImage(str(DATA / "seg_total.nii.gz"))
        labels = case.labels_to_network(sitk.GetArrayFromImage(seg).astype(np.int16))
        kidney = labels == 3                                  # kidney_left
        centre = np.argwhere(kidney).mean(0)
        dist = np.linalg.norm((np.indices(case.shape).reshape(3, -1).T - centre) * 3.0, axis=1)
        roi = kidney & (dist.reshape(case.shape) <= 12.0)     # a few mL of the left kidney
        plan = plan_roi(model, case, roi)
        print(f"CT grid {case.shape}, patch {model.patch_size}, tiles whole image {len(plan.grid)}, "
              f"ROI {int(roi.sum())} voxels ({roi.sum() * 27 / 1000:.1f} mL), ROI tiles {len(plan.tiles)}, "
              f"crop {plan.crop_shape}, passes per tile {model.passes_per_tile}")
        rng = np.random.default_rng(0)
        results = {}
        if not args.only_throughput:
            samplers = {"uniform": uniform_size_coalitions, "kernelshap": kernelshap_like}
            anatomy = anatomy_for_case(case, plan, PlayerSettings(), DATA / "seg_total.nii.gz",
                                       DATA / "labels_total.json")
            for abstraction in args.players:
                pm = players_for_case(case, plan, PlayerSettings(abstraction=abstraction), anatomy=anatomy)
                for dname in args.samplers:
                    coalitions = samplers[dname](rng, args.coalitions, pm.n_players)
                    title = f"{abstraction} players, {dname} coalitions"
                    results[f"{abstraction}/{dname}"] = bench_players(title, model, case, plan, pm.ids,
                                                                      pm.n_players, coalitions, args.batch)
        fps = forwards_per_second(model, plan, case)
        print("\n== tile forwards per second by batch size (patch %s, %d passes per tile): %s" % (
            model.patch_size, model.passes_per_tile, ", ".join(f"bs {k}: {v:.1f}/s" for k, v in fps.items())))
        cl = channels_last_check(model, plan, case)
        print(f"== channels_last_3d at batch 4: {cl['channels_last_3d']:.1f} tiles/s vs default "
              f"{cl['default']:.1f} tiles/s; max |output difference| {cl['max_abs_diff']:.2e} "
              f"({'bitwise equal' if cl['max_abs_diff'] == 0 else 'not bitwise, so off by default'})")
        results["forwards_per_second"] = fps
        results["channels_last"] = cl
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
