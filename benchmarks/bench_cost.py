"""Benchmark: what a real explanation costs, the paper's setup against today's defaults.

Four real cases, each explained by every setup asked for in this run (or read back from ``--reuse``):

* ``spleen_dice``   the shared CT with ``abdo7-small``: Dice of the spleen against the
  TotalSegmentator reference in a box on the spleen's boundary (a true positive);
* ``kidney_edge``   the same model: soft Dice of the left kidney in a box on its upper edge;
* ``demo_fp``       the demo's false positive (phantom, demo model, soft FP volume);
* ``kidney_box``    a box around the whole left kidney (494 flat hybrid players: the paper
  setup is about 4 940 coalitions × 6 tiles, an hour or more on 2 cores).

Setups: ``paper`` = flat hybrid players at the case's settings, ``--strategy paper``
(only tiles with an absent player are re-run), KernelSHAP (``wls``) with paired sampling
and a budget of 10·M, run to the budget; ``default`` = the engine's defaults; ``pruned`` =
the defaults with ``--tolerance 0.01`` (its bound, and the error measured on re-run
coalitions); ``no_proxy`` and ``cost_aware`` = the defaults without the proxy game, and with
cost-aware draws (``--cost-candidates 4``): what each lever pays (kidney edge and demo);
``refine_8`` = two refinements more (kidney box); ``by_phi`` = refining the largest |φ|
first instead of the largest |φ|·volume; ``equal_split`` = children sharing their parent's
surplus equally (``--split equal``, the previous default); ``gp_trees`` = ``--estimator gp-trees``;
``proxy_05`` and ``proxy_10`` = the proxy game at ``--proxy-tolerance`` 0.05 (the previous
default) and 0.10, against the default's 0.25; ``batch_4`` = four tiles per network call, the
previous CPU default (the same forwards and φ,
bit for bit: what the batch of two saves in seconds); ``time_limit_60`` = the defaults with
``--time-limit 60`` (kidney box: how close to 60 s sampling stops; ``time_limit_20`` the same at
20 s, for a CPU that finishes the tree within 60 s); ``fcc_time_limit_30`` =
one flat game of FCC players (kidney box: hundreds of players, so the limit falls inside
KernelSHAP's first design of 2M + 2 coalitions) with ``--time-limit 30``; ``refine_0`` … ``refine_2``
and their ``_pruned`` twins (``--tolerance 0.01``) = the tree stopped after 0, 1 or 2
refinements; ``flat_2m2`` (and ``_pruned``) = the demo's 14 flat players with the smallest
design that determines their values, 2M + 2 = 30 coalitions (demo only: how cheap an answer
can be that still matches the paper's AOPC and ABPC, the *frontier* table); ``flat_u6`` and
``flat_u10`` (and ``_pruned``) = that design played on the proxy game and corrected by 6 or 10
exact coalitions with unbiased KernelSHAP (``--residual-coalitions``; demo only);
``residual_2m2`` = the defaults with each proxy corrected by 2M + 2 exact coalitions (a
determined fit; the default before ``--residual-coalitions 6``). All without
test-time mirroring (the engine's default; it multiplies every setup's cost by 8). Reported
per case and setup: players, coalitions, tile forwards (sampling and faithfulness; setup
forwards apart), wall seconds, AOPC, ABPC,
deletion/insertion AUC, anatomical alignment, all from curves over the *removed volume* of
the support (mL), so different partitions compare; the ratio of tile forwards; and where the
forwards go: each game of the tree (players, exact and proxy coalitions, tile forwards).

The curves rank players by φ per mL (the engine's own curves). Every row's curves are
re-evaluated here from its stored φ under both rankings, by φ per mL and by φ (the ranking
of earlier releases), through a fresh evaluator: a read-back row is measured as today's, and
a fresh row's re-evaluation must equal the engine's own numbers (checked).

    python benchmarks/bench_cost.py [--cases ...] [--setups paper default ...] [--out DIR] [--reuse] [--value V]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ShapSegExplainLib.choices import VALUES
from ShapSegExplainLib.run.explain import prepare_inputs, run_explanation, value_function_of
from ShapSegExplainLib.run.state import Run
from ShapSegExplainLib.run.job import ExplainJob

SHARED = Path(__file__).resolve().parents[2] / "shared"
CT = SHARED / "data" / "totalseg-example" / "ct.nii.gz"
SEG = SHARED / "data" / "totalseg-example" / "seg_total.nii.gz"
MODEL = SHARED / "models" / "abdo7-small"
SPLEEN_TOTALSEG = 1

SETUPS = {"paper": dict(strategy="paper", estimator="wls", budget=None, threshold=0.0, levels=1, proxy_tolerance=0.0),
          "default": {},
          "pruned": dict(tolerance=0.01),
          "no_proxy": dict(proxy_tolerance=0.0),       # the levers one at a time: without the proxy game,
          "cost_aware": dict(cost_candidates=4),       # with cost-aware draws
          "time_limit_60": dict(time_limit=60.0),      # the defaults stopped 60 s after sampling starts
          "time_limit_20": dict(time_limit=20.0),      # ... 20 s: inside the tree where a fast CPU ends it by 60
          "refine_8": dict(refinements=8),             # two refinements more than the default
          "by_phi": dict(refine_by="phi"),             # refine the largest |φ| first, not |φ|·volume
          "equal_split": dict(split="equal"),          # children share the parent's surplus equally (two-step)
          "gp_trees": dict(estimator="gp-trees"),      # the tree proxy plus the GP on its residuals
          "batch_4": dict(batch_size=4),               # the previous CPU batch (same forwards, bitwise)
          "proxy_05": dict(proxy_tolerance=0.05),      # tighter proxy games than the default's 0.25: dearer
          "proxy_10": dict(proxy_tolerance=0.10),      # proxy coalitions, a smaller residual to correct
          "residual_2m2": dict(residual_coalitions=0),  # each proxy corrected by 2M + 2 exact coalitions (the
                                                        # previous default; now 6, unbiased KernelSHAP)
          "fcc_time_limit_30": dict(players="fcc", levels=1, time_limit=30.0)}   # flat FCC, hundreds of players
LEVERS = ("no_proxy", "cost_aware", "refine_8", "by_phi", "equal_split", "gp_trees", "batch_4", "proxy_05",
          "proxy_10", "residual_2m2")
PRUNE = (("", {}), ("_pruned", {"tolerance": 0.01}))              # each frontier setup exact and pruned
FRONTIER = {**{f"refine_{r}{tag}": dict(refinements=r, **tol)      # the tree stopped after r refinements
               for r in (0, 1, 2) for tag, tol in PRUNE},
            **{f"flat_2m2{tag}": dict(levels=1, budget=30, residual_coalitions=0, **tol)   # flat, KernelSHAP's
               for tag, tol in PRUNE},                             # smallest design, 2M + 2 = 30 for 14 players
            **{f"flat_u{k}{tag}": dict(levels=1, budget=30, residual_coalitions=k, **tol)   # the same design
               for k in (6, 10) for tag, tol in PRUNE}}            # on the proxy; k exact coalitions, unbiased
SETUPS.update(FRONTIER)
TIME_LIMITED = {name: s["time_limit"] for name, s in SETUPS.items() if "time_limit" in s}
ONLY_ON = {"no_proxy": ("kidney_edge", "demo_fp"), "cost_aware": ("kidney_edge", "demo_fp"),
           "time_limit_60": ("kidney_box",), "time_limit_20": ("kidney_box",), "refine_8": ("kidney_box",),
           "fcc_time_limit_30": ("kidney_box",),
           **dict.fromkeys(FRONTIER, ("demo_fp",))}   # the other setups run on every case


def reference_mask(folder: Path, label: int) -> str:
    """A TotalSegmentator label as a mask file in the CT's geometry."""
    seg = sitk.ReadImage(str(SEG))
    mask = sitk.Cast(seg == label, sitk.sitkUInt8)
    path = folder / f"reference_{label}.nii.gz"
    sitk.WriteImage(mask, str(path), True)
    return str(path)


def case_jobs(name: str, work: Path, out: Path, **setup) -> ExplainJob:
    """The job of one case under one setup (keyword overrides)."""
    common = {"mirroring": False, "device": "cpu", "tolerance": 0.0, **setup}   # the demo's own job prunes
    if name == "spleen_dice":
        return ExplainJob(ct=str(CT), model=str(MODEL), target="spleen", out=str(out), roi_box=[13, 27, 14, 18, 32, 19],
                          reference=reference_mask(work, SPLEEN_TOTALSEG), **{"value": "dice", **common}).check()
    if name == "kidney_edge":
        return ExplainJob(ct=str(CT), model=str(MODEL), target="kidney_left", out=str(out),
                          roi_box=[30, 27, 8, 35, 32, 13], **common).check()
    if name == "kidney_box":
        return ExplainJob(ct=str(CT), model=str(MODEL), target="kidney_left", out=str(out),
                          roi_box=[23, 27, 0, 44, 49, 22], **common).check()
    if name == "demo_fp":
        from ShapSegExplainLib.demo.demo_case import demo_job, write_demo_case
        return demo_job(write_demo_case(work / "demo_inputs"), out, **common)
    raise SystemExit(f"unknown case {name}")


def run_setup(case: str, setup: str, work: Path, folder: Path, reuse: bool, extra: dict) -> dict:
    """explanation.json of one case under one setup (read back if ``reuse`` and present)."""
    out = folder / case / setup
    done = out / "explanation.json"
    if reuse and done.is_file():
        content = json.loads(done.read_text())
        content["reused"] = True
        return content
    job = case_jobs(case, work, out, **SETUPS[setup], **extra)
    t0 = time.perf_counter()
    content = run_explanation(job)
    content["wall_seconds"] = round(time.perf_counter() - t0, 2)
    done.write_text(json.dumps({k: v for k, v in content.items() if k not in ("out", "files")}, indent=1))
    return content


def player_game(job: ExplainJob, content: dict):
    """The saved explanation's final players as a game (through the tree's atoms when coarse to fine)."""
    from ShapSegExplainLib.nnunet.evaluator import CoalitionEvaluator
    from ShapSegExplainLib.shapley.hierarchy import node_game

    i = prepare_inputs(Run(job, lambda e: None, lambda: False))
    tree = i.players.tree
    ids = tree.atoms.ids if tree is not None else i.players.pmap.ids
    m = tree.atoms.n_players if tree is not None else i.players.pmap.n_players
    ev = CoalitionEvaluator(i.model, i.case, i.players.plan, ids, m, baseline_hu=job.baseline_hu,
                            tolerance=job.tolerance, memory_budget_bytes=1 << 30)   # the curves of a pruned run are pruned
    vf = value_function_of(job, i.model, i.case, i.target, i.roi, ev.evaluate(np.ones((1, m), bool)))
    game = lambda c: vf(ev.evaluate(np.asarray(c, bool)))   # noqa: E731
    if tree is not None:
        return node_game(game, tree.membership([tree.names.index(r["name"]) for r in content["players"]]))
    if [p.name for p in i.players.pmap.players] != [r["name"] for r in content["players"]]:
        raise SystemExit(f"the rebuilt players of {job.out} differ from the saved ones")
    return game


def curves_both_orders(case: str, setup: str, work: Path, content: dict, extra: dict) -> dict:
    """AOPC, ABPC and the AUCs of the stored φ, players ranked by φ per mL and by φ."""
    from ShapSegExplainLib.shapley.metrics import faithfulness
    job = case_jobs(case, work, work / "recurve", **SETUPS[setup], **extra)
    game, rows = player_game(job, content), content["players"]
    args = dict(steps=job.faithfulness_steps, volumes=np.array([r["ml"] for r in rows]),
                kept=np.array([r["kind"] == "context" for r in rows]))
    phi = np.array([r["phi"] for r in rows])
    out = {order: faithfulness(game, phi, order=order, **args) for order in ("density", "phi")}
    own = content["faithfulness"]
    if not content.get("reused") and abs(out["density"]["aopc"] - own["aopc"]) > 1e-6:
        raise SystemExit(f"{case}/{setup}: re-evaluated AOPC {out['density']['aopc']} != the engine's {own['aopc']}")
    return out


def row(content: dict, curves: dict) -> dict:
    f, s = curves["density"], content["stats"]
    return {"players": len(content["players"]), "coalitions": s["coalitions"],
            "tile_forwards": s["tile_forwards"], "setup_forwards": s["tile_forwards_setup"],
            "sampling_forwards": s["tile_forwards_sampling"],
            "seconds": content.get("wall_seconds", s["seconds"]),
            "aopc": f["aopc"], "abpc": f["abpc"], "deletion_auc": f["deletion_auc"],
            "insertion_auc": f["insertion_auc"], "alignment": content["faithfulness"].get("anatomical_alignment"),
            "levels": len(content.get("levels") or []) or 1, "reused": content.get("reused", False),
            "sampling_seconds": s["seconds_by_phase"].get("shapley"), "stop_reason": content["shapley"]["stop_reason"],
            "pruning": content.get("pruning") or None, "phi": {r["name"]: r["phi"] for r in content["players"]},
            "max_se": max((r.get("se") or 0.0 for r in content["players"]), default=0.0),
            "sum_abs_phi": sum(abs(r["phi"]) for r in content["players"]),
            "ml_removed": f["ml_removed"], "morf": f["morf"], "lerf": f["lerf"],
            "by_phi": {k: curves["phi"][k] for k in ("aopc", "abpc", "deletion_auc", "insertion_auc")},
            "scales": [lv.get("scale") for lv in content.get("levels") or [] if lv.get("refined")],
            "by_level": by_level(content)}


def by_level(content: dict) -> list[dict]:
    """Where the forwards go: each game of the tree (the coarse one, then each refinement) with
    its players, exact and proxy coalitions and tile forwards (the sampler records running totals)."""
    counts = ("coalitions", "proxy_coalitions", "tile_forwards")
    out, before = [], {"players": 0, **dict.fromkeys(counts, 0)}
    for lv in content.get("levels") or []:
        children = lv["players"] - before["players"] + (1 if lv["refined"] else 0)   # a refined player leaves
        out.append({"game": lv["refined"] or "coarse", "players": children, **{k: lv[k] - before[k] for k in counts}})
        before = lv
    return out


def table(results: dict) -> str:
    lines = ["| case | setup | players | coalitions | tile forwards (Shapley + rest) | seconds | AOPC | ABPC "
             "| del AUC | ins AUC | alignment | AOPC, ABPC ranked by φ |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for case, by_setup in results.items():
        for setup, r in by_setup.items():
            lines.append(f"| {case} | {setup} | {r['players']} | {r['coalitions']} | {r['tile_forwards']} "
                         f"({r['sampling_forwards']} + {r['tile_forwards'] - r['sampling_forwards']}) | "
                         f"{r['seconds']:.0f} | {r['aopc']:.4g} | {r['abpc']:.4g} | {r['deletion_auc']:.4g} | "
                         f"{r['insertion_auc']:.4g} | {r['alignment'] if r['alignment'] is None else round(r['alignment'], 3)} "
                         f"| {r['by_phi']['aopc']:.4g}, {r['by_phi']['abpc']:.4g} |")
        for setup in ("default", "pruned"):
            if {"paper", setup} <= set(by_setup):
                p, d = by_setup["paper"], by_setup[setup]
                lines.append(f"| {case} | paper ÷ {setup} | | | **{p['tile_forwards'] / max(d['tile_forwards'], 1):.2f}×** "
                             f"({p['sampling_forwards'] / max(d['sampling_forwards'], 1):.2f}× + "
                             f"{(p['tile_forwards'] - p['sampling_forwards']) / max(d['tile_forwards'] - d['sampling_forwards'], 1):.1f}×) | "
                             f"{p['seconds'] / max(d['seconds'], 1e-9):.1f}× | "
                             f"{'≥' if d['aopc'] >= p['aopc'] else '<'} | {'≥' if d['abpc'] >= p['abpc'] else '<'} | | | "
                             f"| {'≥' if d['by_phi']['aopc'] >= p['by_phi']['aopc'] else '<'}, "
                             f"{'≥' if d['by_phi']['abpc'] >= p['by_phi']['abpc'] else '<'} |")
        for lever in LEVERS:
            if {"default", lever} <= set(by_setup):
                d, x = by_setup["default"], by_setup[lever]
                lines.append(f"| {case} | {lever} ÷ default | | | {x['tile_forwards'] / max(d['tile_forwards'], 1):.2f}× | "
                             f"{x['seconds'] / max(d['seconds'], 1e-9):.2f}× | {x['aopc'] - d['aopc']:+.3g} | "
                             f"{x['abpc'] - d['abpc']:+.3g} | | | | |")
    for case, by_setup in results.items():
        for setup, limit in TIME_LIMITED.items():
            if setup in by_setup:
                r = by_setup[setup]
                lines.append(f"| {case} | {setup}: sampling stopped after {r['sampling_seconds']:.1f} s "
                             f"({(r['sampling_seconds'] - limit) / limit:+.1%}), {r['stop_reason']} | | | | | | | | | | |")
    lines += ["", "| case | tiles kept | bound on \\|Δ logit\\| | measured max \\|Δ logit\\| | measured max \\|Δ value\\| "
              "| max \\|Δφ\\| vs default (same players) |", "|---|---|---|---|---|---|"]
    for case, by_setup in results.items():
        r = by_setup.get("pruned")
        if r and r["pruning"] and "bound_logit" in r["pruning"]:
            pr, d = r["pruning"], by_setup.get("default")
            same = d is not None and set(d["phi"]) == set(r["phi"])
            dphi = max(abs(r["phi"][k] - d["phi"][k]) for k in r["phi"]) if same else None
            lines.append(f"| {case} | {pr['tiles_kept']} of {pr['tiles']} | {pr['bound_logit']:.3g} | "
                         f"{pr['measured_max_logit']:.3g} | {pr['measured_max_value']:.3g} | "
                         f"{'n/a (players differ)' if dphi is None else f'{dphi:.3g}'} |")
    lines += ["", "| case | setup | game | players | exact coalitions | proxy coalitions | tile forwards |",
              "|---|---|---|---|---|---|---|"]
    for case, by_setup in results.items():
        for setup, r in by_setup.items():
            games = r.get("by_level") or []
            for g in games:
                lines.append(f"| {case} | {setup} | {g['game']} | {g['players']} | {g['coalitions']} | "
                             f"{g['proxy_coalitions']} | {g['tile_forwards']} |")
            if games:
                rest = r["tile_forwards"] - r["sampling_forwards"]
                lines.append(f"| {case} | {setup} | curves (and pruning's checks) | | | | {rest} |")
    lines += ["", "| case | lever | same players as the default | max \\|Δφ\\| vs default | Σ\\|φ\\| of the default |",
              "|---|---|---|---|---|"]
    for case, by_setup in results.items():
        d = by_setup.get("default")
        for lever in (x for x in LEVERS if d is not None and x in by_setup):
            x = by_setup[lever]
            same = set(d["phi"]) == set(x["phi"])
            dphi = f"{max(abs(x['phi'][k] - d['phi'][k]) for k in x['phi']):.3g}" if same else "n/a"
            lines.append(f"| {case} | {lever} | {'yes' if same else 'no'} | {dphi} | "
                         f"{sum(abs(v) for v in d['phi'].values()):.3g} |")
    return "\n".join(lines)


def frontier_table(results: dict) -> str:
    """Per case with the paper's row and a ``FRONTIER`` setup: the default, the pruned mode and
    the frontier's setups, cheapest first, each against the paper: forwards (all and the
    Shapley values' own), whether AOPC and ABPC are both at least the paper's, and the largest
    standard error beside Σ|φ| (the noise the curves do not see) ("" if none)."""
    lines = ["| case | setup | refinements (or flat) | players | tile forwards (Shapley + rest) | paper ÷ setup: all / own "
             "| AOPC | ABPC | matches the paper | max SE (Σ\\|φ\\|) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for case, by_setup in results.items():
        p = by_setup.get("paper")
        if p is None or not set(FRONTIER) & set(by_setup):
            continue
        rows = sorted((r["tile_forwards"], name, r) for name, r in by_setup.items()
                      if name in FRONTIER or name in ("default", "pruned"))
        for forwards, name, r in rows:
            match = r["aopc"] >= p["aopc"] and r["abpc"] >= p["abpc"]
            depth = r["levels"] - 1 if r["by_level"] else "flat"
            lines.append(f"| {case} | {name} | {depth} | {r['players']} | {forwards} "
                         f"({r['sampling_forwards']} + {forwards - r['sampling_forwards']}) | "
                         f"{p['tile_forwards'] / max(forwards, 1):.2f}× / "
                         f"{p['sampling_forwards'] / max(r['sampling_forwards'], 1):.2f}× | {r['aopc']:.4g} | "
                         f"{r['abpc']:.4g} | {'yes' if match else 'no'} | {noise(r)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def noise(r: dict) -> str:
    """The largest standard error and Σ|φ| ("" for a row read back from before they were kept)."""
    return f"{r['max_se']:.3g} ({r['sum_abs_phi']:.3g})" if "max_se" in r else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["spleen_dice", "kidney_edge", "demo_fp", "kidney_box"])
    ap.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    ap.add_argument("--out", default=None, help="keep the results here (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="read back results already in --out")
    ap.add_argument("--value", choices=VALUES, default=None,
                    help="explain this value on every case instead of the case's own (a check of a lever out of "
                         "the benchmark's games; use its own --out)")
    args = ap.parse_args()
    extra = {} if args.value is None else {"value": args.value}
    folder = Path(args.out or tempfile.mkdtemp(prefix="bench_cost_"))
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            for setup in args.setups:
                if case not in ONLY_ON.get(setup, (case,)):
                    continue
                content = run_setup(case, setup, Path(tmp), folder, args.reuse, extra)
                curves = curves_both_orders(case, setup, Path(tmp), content, extra)
                results.setdefault(case, {})[setup] = row(content, curves)
                print(json.dumps({"case": case, "setup": setup,
                                  **{k: v for k, v in results[case][setup].items()
                                     if k not in ("ml_removed", "morf", "lerf", "phi")}}), flush=True)
    (folder / "bench_cost.json").write_text(json.dumps(results, indent=1))
    print(table(results))
    frontier = frontier_table(results)
    if frontier:
        print("\n" + frontier)
    print(f"results: {folder}", file=sys.stderr)


if __name__ == "__main__":
    main()
