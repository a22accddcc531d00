"""Experiment behind the default ``--proxy-tolerance``: how far each proxy's estimate lies from
the tree's exact values on a real case.

The exact values: the same coarse-to-fine run with every refinement game enumerated
(``hierarchy.EXACT_CHILDREN`` raised to ``--enumerate``; no proxy plays an enumerated game).
Each saved ``explanation.json`` given (``bench_cost --out DIR``: DIR/<case>/<setup>/) is then
compared player by player: max and summed |φ − φ_exact|, beside Σ|φ_exact|. The exact run is
dear (demo: 4 200 tile forwards), so it is an experiment, not a benchmark row.

    python benchmarks/experiments/proxy_exact.py demo_fp DIR/demo_fp/proxy_05/explanation.json \\
        DIR/demo_fp/default/explanation.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import ShapSegExplainLib.shapley.hierarchy as hierarchy  # noqa: E402
from bench_cost import case_jobs  # noqa: E402
from ShapSegExplainLib.run.explain import run_explanation  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", help="a bench_cost case (spleen_dice, kidney_edge, demo_fp, kidney_box)")
    ap.add_argument("explanations", nargs="+", help="explanation.json files of that case to grade")
    ap.add_argument("--enumerate", type=int, default=9, help="enumerate refinement games up to this many children")
    args = ap.parse_args()
    hierarchy.EXACT_CHILDREN = args.enumerate
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        content = run_explanation(case_jobs(args.case, work, work / "out", faithfulness_steps=0))
    exact = {p["name"]: p["phi"] for p in content["players"]}
    total = sum(abs(v) for v in exact.values())
    print(f"{args.case}: exact tree values, {content['stats']['tile_forwards']} tile forwards, refined "
          f"{[lv['refined'] for lv in content['levels'][1:]]}, Σ|φ| {total:.4g}")
    for path in args.explanations:
        phi = {p["name"]: p["phi"] for p in json.loads(Path(path).read_text())["players"]}
        if set(phi) != set(exact):
            print(f"{path}: other players (refined otherwise)")
            continue
        err = [abs(phi[k] - exact[k]) for k in exact]
        print(f"{path}: max |Δφ| {max(err):.4g}, Σ|Δφ| {sum(err):.4g}")


if __name__ == "__main__":
    main()
