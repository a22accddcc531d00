"""The coarse level's reported SE, calibrated: after a doubling the coarse answer reports
SE = max(model SE, c·|change since the half budget|) while its decisions (when to double, what
is resolved) always use the whole change, so c moves the intervals and nothing else (errors,
top 3 and forwards are the same for every c; checked here). c is chosen on the tuning findings
(pooled 95 % coverage nearest 0.95, every finding ≥ 0.85) and reported on the held-out ones.

    python benchmarks/experiments/coarse_calibration.py --split tuning --seeds 3 --scales 1 0.75 0.577 0.5 0.35 0.25
    python benchmarks/experiments/coarse_calibration.py --split heldout --seeds 3 --scales 1 C
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "heldout"))
import evaluate  # noqa: E402  (benchmarks/heldout/evaluate.py: the recorded findings and their scoring)


def run(games, scales: list[float], seeds: int) -> dict:
    """Per scale: every (finding, seed) score; the path must not depend on the scale."""
    out = {}
    for c in scales:
        play = evaluate.coarse_level(evaluate.hierarchy.EXACT_ROOT_FORWARDS, change_se=c)
        out[c] = {(g.id, s): (g.reset(), evaluate.score(g, play(g, s)))[1] for g in games for s in range(seeds)}
    first = out[scales[0]]
    for c in scales[1:]:
        for key, r in out[c].items():
            assert (r["error"], r["top3"], r["forwards"]) == (first[key]["error"], first[key]["top3"],
                                                              first[key]["forwards"]), (c, key)
    return out


def summary(games, scores: dict) -> dict:
    per = {g.id: [r for (gid, _), r in scores.items() if gid == g.id] for g in games}
    cover = {gid: sum(r["covered"] for r in rs) / sum(r["n"] for r in rs) for gid, rs in per.items()}
    sampled = [r for (gid, _), r in scores.items() if r["error"] > 1e-12]
    return {"pooled": sum(r["covered"] for r in scores.values()) / sum(r["n"] for r in scores.values()),
            "worst_finding": min(cover.values()), "worst_id": min(cover, key=cover.get),
            "pooled_sampled": (sum(r["covered"] for r in sampled) / sum(r["n"] for r in sampled)) if sampled else None,
            "worst_error": max(np.mean([r["error"] for r in rs]) for rs in per.values()),
            "top3": float(np.mean([r["top3"] for r in scores.values()])),
            "forwards": float(np.mean([r["forwards"] for r in scores.values()]))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=["tuning", "heldout"], default="tuning")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.75, 0.577, 0.5, 0.35, 0.25])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    split = json.loads((evaluate.HERE / "split.json").read_text())["split"]
    games = [evaluate.Recorded.load(p) for p in sorted(evaluate.GAMES.glob("*.npz")) if split.get(p.stem) == args.split]
    results = run(games, args.scales, args.seeds)
    lines = [f"{args.split}: {len(games)} findings × {args.seeds} seeds; errors, top 3 and forwards equal for every c",
             "", "| c | pooled coverage | of answers not exact | worst finding | top-3 | worst error | forwards |",
             "|---|---|---|---|---|---|---|"]
    for c in args.scales:
        s = summary(games, results[c])
        sampled = "–" if s["pooled_sampled"] is None else f"{s['pooled_sampled']:.3f}"
        lines.append(f"| {c:g} | {s['pooled']:.3f} | {sampled} | {s['worst_finding']:.2f} ({s['worst_id']}) | "
                     f"{s['top3']:.0%} | {s['worst_error']:.0%} | {s['forwards']:.0f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
