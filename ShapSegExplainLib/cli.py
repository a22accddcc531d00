"""The ``shapseg`` command line. Bad input gives one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from .choices import DEVICES, REFINE_BY, SPLITS, STRATEGIES, allowed
from .errors import ShapSegError

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1


def _floats(text: str, n: int, what: str) -> list[float]:
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        vals = []
    if len(vals) != n:
        raise ShapSegError(f"{what} needs {n} comma-separated numbers, got '{text}'", "bad_option")
    return vals


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, help="nnU-Net v2 results folder (plans.json, dataset.json, fold_*)")
    g.add_argument("--configuration", default=None, help="configuration, when the folder holds several")
    g.add_argument("--folds", nargs="+", default=None, help="folds to ensemble (default: all present)")
    g.add_argument("--checkpoint", default="checkpoint_final.pth",
                   help="checkpoint file in each fold (default %(default)s)")
    g.add_argument("--mirroring", dest="mirroring", action="store_true", default=False,
                   help="explain with nnU-Net's mirroring test-time augmentation (8 network passes per tile in 3D; "
                        "default: the network's single pass)")
    g.add_argument("--no-mirroring", dest="mirroring", action="store_false", help=argparse.SUPPRESS)
    g.add_argument("--step", type=float, default=0.5, help="tile step size (nnU-Net's default 0.5)")
    g.add_argument("--device", default="auto", help=f"{', '.join(DEVICES)} or cuda:N")
    g.add_argument("--batch-size", type=int, default=0,
                   help="tiles per network call; 1 replays nnU-Net's calls bit for bit (slower on CPU); "
                        "default 0: from memory (up to 2 on a CPU, 16 on a GPU)")
    g.add_argument("--max-memory", dest="max_memory_gb", type=float, default=None, metavar="GB",
                   help="host memory (GiB) that the tile memo (half) and a CPU batch (half) stay within "
                        "(default: half the memory available at the start)")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="load a checkpoint that holds more than nnU-Net's own types (tensors, plans, numbers); "
                        "unpickling it can run code: only for a model from a source you trust")


def add_roi_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("region of interest (one of)")
    x = g.add_mutually_exclusive_group(required=True)
    x.add_argument("--roi-mask", help="mask file in the CT's geometry (non-zero = ROI)")
    x.add_argument("--roi-box", help="i0,j0,k0,i1,j1,k1: voxel index corners (inclusive)")
    x.add_argument("--roi-box-ras", help="x0,y0,z0,x1,y1,z1: RAS corners in mm (Slicer's convention)")
    x.add_argument("--roi-point", help="i,j,k: voxel index of a finding; ROI = its connected target component")
    x.add_argument("--roi-point-ras", help="x,y,z: RAS point in mm; ROI = its connected target component")
    g.add_argument("--snap-mm", type=float, default=5.0, help="how far a point may be from the target (mm)")


def roi_arg(args) -> tuple[str, object]:
    """The ROI option given, as (job field, value): a path or a list of numbers."""
    if args.roi_mask:
        return "roi_mask", args.roi_mask
    for kind, n in (("roi_box", 6), ("roi_box_ras", 6), ("roi_point", 3), ("roi_point_ras", 3)):
        text = getattr(args, kind)
        if text:
            return kind, _floats(text, n, "--" + kind.replace("_", "-"))
    raise ShapSegError("give one of --roi-mask, --roi-box, --roi-box-ras, --roi-point, --roi-point-ras", "bad_roi")


def load_inputs(args):
    """Model, prepared case, target label and ROI (network grid) from parsed arguments."""
    from .nnunet.case import prepare_case
    from .nnunet.model import load_model_for
    from .nnunet.roi import make_roi

    kind, value = roi_arg(args)
    model = load_model_for(args)
    target = model.target_label(args.target)
    case = prepare_case(args.ct, model)
    return model, case, target, make_roi(case, target, kind, value, args.snap_mm)


def cmd_inspect(args) -> int:
    """Load everything, report the ROI's tiles and crop and the unperturbed target volume."""
    import numpy as np

    from .nnunet.evaluator import CoalitionEvaluator, plan_roi

    model, case, target, roi = load_inputs(args)
    plan = plan_roi(model, case, roi)
    ev = CoalitionEvaluator(model, case, plan, np.full(plan.crop_shape, -1), n_players=1)
    labels = ev.labels(ev.evaluate(np.ones((1, 1), bool)))[0].numpy()
    voxel_ml = float(np.prod(case.spacing)) / 1000.0
    report = {
        "model": str(model.model_dir), "folds": [str(f) for f in model.folds],
        "mirror_axes": list(model.mirror_axes or ()), "device": str(model.device),
        "target": {"label": target, "name": model.label_name(target)},
        "network_grid": list(case.shape), "network_spacing_mm": list(case.spacing),
        "patch_size": list(model.patch_size), "tiles_whole_image": len(plan.grid),
        "roi_voxels": int(roi.sum()), "roi_ml": round(int(roi.sum()) * voxel_ml, 3),
        "roi_tiles": list(plan.tiles), "crop_shape": list(plan.crop_shape),
        "target_voxels_in_roi": int((labels == target).sum()),
        "target_ml_in_roi": round(int((labels == target).sum()) * voxel_ml, 3),
        "stats": ev.counters.as_dict(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for k, v in report.items():
            if k != "stats":
                print(f"{k:>22}: {v}")
    return 0


def add_player_args(p: argparse.ArgumentParser) -> None:
    from .players.maps import PlayerSettings
    d = PlayerSettings()
    g = p.add_argument_group("players")
    g.add_argument("--players", default=d.abstraction, choices=allowed("players"),
                   help="organ units, FCC supervoxels, hybrid organ-aware supervoxels, or SLIC (default %(default)s)")
    g.add_argument("--spacing-mm", type=float, default=d.spacing_mm,
                   help="FCC lattice spacing D in mm; also the target SLIC size (default %(default)s)")
    g.add_argument("--margin-mm", type=float, default=d.margin_mm,
                   help="fine players within this distance of the ROI; the rest of the crop is one "
                        "context player (default %(default)s)")
    g.add_argument("--min-size-ml", type=float, default=None,
                   help="smaller pieces join a neighbour (default: a quarter of an FCC cell)")
    g.add_argument("--speck-ml", type=float, default=d.speck_ml,
                   help="anatomy pieces smaller than this join their main neighbour (default %(default)s)")
    g.add_argument("--anatomy", default=None,
                   help="label map in the CT's geometry (.nii.gz, .nrrd, .seg.nrrd), e.g. TotalSegmentator's; "
                        "default: the model's own prediction")
    g.add_argument("--anatomy-labels", default=None,
                   help="label names for --anatomy: JSON ({\"1\": \"spleen\"} or a dataset.json) or a colour table")
    g.add_argument("--slic-compactness", type=float, default=d.slic_compactness, help="SLIC compactness")
    g.add_argument("--slic-segments", type=int, default=None, help="SLIC segments (default: support / cell volume)")
    g.add_argument("--no-slic-anatomy", dest="slic_anatomy", action="store_false",
                   help="do not cut SLIC regions along the anatomy map")


def cmd_players(args) -> int:
    """Build the players of one abstraction (or all, --compare) and print their summary and table."""
    from .nnunet.evaluator import plan_roi
    from .players.maps import PlayerSettings, anatomy_for_case, players_for_case
    from .players.stats import map_summary, player_table

    model, case, target, roi = load_inputs(args)
    plan = plan_roi(model, case, roi)
    anatomy = anatomy_for_case(case, plan, PlayerSettings.of(args), args.anatomy, args.anatomy_labels)
    out = []
    for abstraction in (allowed("players") if args.compare else (args.players,)):
        pmap = players_for_case(case, plan, PlayerSettings.of(args, abstraction), anatomy=anatomy)
        rows = player_table(pmap, plan, case.spacing, case.network_to_ras)
        out.append({"summary": map_summary(pmap, plan, case.spacing, rows), "players": rows})
    if args.json:
        print(json.dumps(out if args.compare else out[0], indent=2))
    elif args.compare:
        _print_compare([o["summary"] for o in out])
    else:
        _print_players(out[0])
    return 0


def _print_compare(summaries: list[dict]) -> None:
    print(f"{'players':>8} {'count':>6} {'mean mL':>8} {'min mL':>7} {'max mL':>7} {'purity':>7} "
          f"{'per tile':>9} {'max/tile':>8}")
    for s in summaries:
        print(f"{s['abstraction']:>8} {s['players']:>6} {s['mean_ml']:>8.2f} {s['min_ml']:>7.2f} "
              f"{s['max_ml']:>7.2f} {s['mean_purity']:>7.3f} {s['mean_players_per_tile']:>9.1f} "
              f"{s['max_players_per_tile']:>8}")
    s = summaries[0]
    print(f"support {s['support_ml']} mL, context {s['context_ml']} mL, {s['tiles']} ROI tiles; "
          f"anatomy: {s['anatomy_source']} ({s['anatomy_reassigned_voxels']} speck voxels reassigned); "
          "counts include the context player; sizes and purity are means over the support players")


def _print_players(result: dict) -> None:
    s = result["summary"]
    print(f"{s['abstraction']}: {s['players']} players ({s['support_players']} in the {s['support_ml']} mL support "
          f"+ context {s['context_ml']} mL); mean {s['mean_ml']} mL, mean purity {s['mean_purity']}; "
          f"players per ROI tile: mean {s['mean_players_per_tile']}, max {s['max_players_per_tile']} "
          f"of {s['tiles']} tiles")
    print(f"{'id':>4}  {'name':<28} {'organ':<20} {'mL':>8} {'purity':>6} {'in ROI':>6}  centroid RAS (mm)")
    for r in result["players"]:
        purity = "" if r["purity"] is None else f"{r['purity']:.2f}"
        ras = ", ".join(f"{v:.1f}" for v in r["centroid_ras"])
        print(f"{r['id']:>4}  {r['name'][:28]:<28} {str(r['organ'] or '')[:20]:<20} {r['ml']:>8.2f} {purity:>6} "
              f"{r['roi_voxels']:>6}  ({ras})")


def add_explain_args(p: argparse.ArgumentParser) -> None:
    from .run.job import ExplainJob
    from .shapley.estimator import BUDGET_PER_PLAYER, EXACT_MAX_PLAYERS
    from .shapley.settings import add_arguments as add_estimator_arguments
    d = ExplainJob(ct="", model="", target="", out="")
    g = p.add_argument_group("what is explained")
    g.add_argument("--value", default=d.value, choices=allowed("value"), help="value function (default %(default)s)")
    g.add_argument("--normalized", action="store_true", help="divide by the unperturbed value (full coalition = 1)")
    g.add_argument("--reference", default=None,
                   help="reference mask in the CT's geometry (ground truth); default: the unperturbed prediction "
                        "(for fp/soft_fp: none, every predicted voxel in the ROI counts)")
    g = p.add_argument_group("estimator")
    g.add_argument("--budget", type=int, default=None,
                   help="most coalitions to evaluate (default: 2^M, exact, up to "
                        f"{EXACT_MAX_PLAYERS} players; else {BUDGET_PER_PLAYER}·M)")
    g.add_argument("--time-limit", type=float, default=None,
                   help="stop sampling this many seconds after it starts (checked every few coalitions)")
    g.add_argument("--budget-forwards", type=int, default=None,
                   help="stop sampling after this many tile forwards (the cost that matters)")
    g.add_argument("--levels", type=int, default=d.levels,
                   help="coarse to fine (hybrid, fcc): organ units, then cells of 2^k × --spacing-mm, refining the "
                        "players that carry the explanation; 1 = one flat game (default %(default)s)")
    g.add_argument("--refinements", type=int, default=d.refinements,
                   help="coarse to fine: refine at most this many players (default %(default)s)")
    g.add_argument("--refine-share", type=float, default=d.refine_share,
                   help="coarse to fine: refine only players carrying at least this share of Σ|φ| "
                        "(default %(default)s)")
    g.add_argument("--refine-by", default=d.refine_by, choices=REFINE_BY,
                   help="coarse to fine: refine next the player with the largest |φ|·volume (volume; a large "
                        "tissue player is split before a small one of slightly larger φ) or |φ| (phi) "
                        "(default %(default)s)")
    g.add_argument("--split", default=d.split, choices=SPLITS,
                   help="coarse to fine: a refined player's children share its value in proportion to their values "
                        "with everything else present (proportional: the Owen value when the player's effect scales "
                        "with its context; a player whose value shows only with others absent is left whole) or "
                        "share the difference equally (equal: the two-step Shapley value) (default %(default)s)")
    g.add_argument("--strategy", default=d.strategy, choices=STRATEGIES,
                   help="tile caching; changes the cost, never the result (default %(default)s)")
    g.add_argument("--seed", type=int, default=d.seed, help="sampling seed (default %(default)s)")
    g.add_argument("--tolerance", type=float, default=d.tolerance,
                   help="freeze ROI tiles whose Gaussian share of the fused logits is at most this; the bound on the "
                        "logit change is reported (default %(default)s: exact)")
    g.add_argument("--proxy-tolerance", type=float, default=d.proxy_tolerance,
                   help="play a proxy game with the ROI tiles of Gaussian share at most this frozen, and correct it "
                        "with a few exact coalitions per sampled game (--residual-coalitions; a control variate: "
                        "no bias of its own; default %(default)s; 0 = off)")
    g.add_argument("--baseline-hu", type=float, default=d.baseline_hu,
                   help="what an absent player's voxels become, in HU (default %(default)s: air)")
    g.add_argument("--fixed-context", dest="context_player", action="store_false",
                   help="keep the rest of the crop (beyond --margin-mm) as it is in every coalition instead of "
                        "making it one 'context' player that can be absent")
    g.add_argument("--faithfulness-steps", type=int, default=d.faithfulness_steps,
                   help="points on the MoRF/LeRF/insertion curves; 0 = skip (default %(default)s)")
    add_estimator_arguments(p.add_argument_group("the estimator's options"))
    p.add_argument("--out", required=True, help="output folder (written atomically; a previous result is replaced)")
    p.add_argument("--resume", action="store_true",
                   help="go on from where a killed, cancelled or time-limited run of the same --out and settings "
                        "stopped (its journal of evaluated coalitions); φ is that of an uninterrupted run")
    p.add_argument("--json", action="store_true", help="print explanation.json's summary as JSON")


def job_from_args(args):
    """The ``ExplainJob`` the parsed ``shapseg explain`` options describe: every option's
    destination is the job field of the same name, so this is the one mapping."""
    from dataclasses import fields

    from .run.job import ROI_KINDS, ExplainJob
    kind, value = roi_arg(args)
    given = {f.name: getattr(args, f.name) for f in fields(ExplainJob) if hasattr(args, f.name)}
    return ExplainJob(**{**given, **dict.fromkeys(ROI_KINDS), kind: value}).check()


def run_and_print(job, as_json: bool, **kwargs) -> dict:
    """Run a job with a progress display on stderr; print the top drivers and the outputs."""
    from .run.explain import run_explanation
    from .run.progress import progress_for

    progress = progress_for()
    try:
        expl = run_explanation(job, progress, **kwargs)
    finally:
        progress.close()
    if as_json:
        print(json.dumps({k: expl[k] for k in ("target", "value", "base_value", "full_value", "additivity_error",
                                               "shapley", "faithfulness", "stats", "out", "files")}, indent=2))
    else:
        print_result(expl)
    return expl


def print_result(expl: dict) -> None:
    """What was explained, the top drivers and what of them may be named, the cost, the outputs."""
    from .display import resolution_lines
    from .run.explain import top_drivers
    unit = expl["value"]["unit"]
    u = f" {unit}" if unit else ""
    print(f"{expl['value']['name']} of {expl['target']['name']} in the ROI: all players present "
          f"{expl['full_value']:.4g}{u}, all absent {expl['base_value']:.4g}{u} "
          f"(Σφ - difference = {expl['additivity_error']:.1e})")
    print(f"top drivers ({len(expl['players'])} players, {expl['shapley']['n_evaluations']} coalitions, "
          f"{'exact' if expl['shapley']['exact'] else expl['shapley']['estimator']}):")
    for r in top_drivers(expl):
        se = "?" if r["se"] is None else f"{1.96 * r['se']:.2g}"
        print(f"  {r['phi']:+10.4g} ± {se:<9}{r['name']:<32} {r['ml']:8.2f} mL")
    for line in resolution_lines(expl["players"]):
        print(line)
    s = expl["stats"]
    print(f"cost: {s['tile_forwards']} tile forwards for {s['coalitions']} coalitions (without the cache "
          f"{s['tile_forwards_roi']}; {s['cache_hits']} cache hits), {s['seconds']:.1f} s")
    print(f"outputs: {expl['out']}  (report.png, players.seg.nrrd, attribution.nrrd, roi.seg.nrrd, "
          "attributions.csv, explanation.json)")


def cmd_explain(args) -> int:
    """Explain the model's output in the ROI; write the outputs to --out."""
    run_and_print(job_from_args(args), args.json)
    return 0


def cmd_demo(args) -> int:
    """The embedded default: the phantom with a mimic, the demo model, its false positive."""
    import tempfile
    from pathlib import Path

    from .demo import DEMO_MODEL
    from .demo.demo_case import demo_job, write_demo_case
    model = Path(args.model) if args.model else DEMO_MODEL
    if not (model / "plans.json").is_file():
        raise ShapSegError(f"the demo model is missing at {model}; train it with "
                           "'python scripts/train_demo_model.py --out ShapSegExplainLib/demo/model'", "model_not_found")
    print(f"demo: phantom (seed {args.seed}) with a kidney-bright blob next to the left kidney; the model "
          "calls part of it kidney_left. Which players make it say so?", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="shapseg_demo_") as tmp:
        case = write_demo_case(Path(tmp) / "inputs", args.seed)
        job = demo_job(case, args.out, model, **({"budget": args.budget} if args.budget else {}))
        inputs = [case.files[k] for k in ("ct", "roi", "reference", "anatomy", "anatomy_labels")]
        run_and_print(job, args.json, extra_files=inputs)
    return 0


def cmd_report(args) -> int:
    """Re-draw report.png of a finished result from its files (other options, or identically)."""
    from .report.figure import write_report
    window = args.window.replace("_", " ") if args.window else None
    print(write_report(args.out, args.to, args.ct, window, args.show_uncertain))
    return 0


def cmd_study(args) -> int:
    """Run (or go on with) a study of many explanations on a Dask cluster; write its report."""
    from pathlib import Path

    from .study.runner import prepare_folder, require_packages, run_study
    manifest = args.manifest
    if args.demo == bool(manifest):
        raise ShapSegError("give a study manifest (CSV or YAML) or --demo", "bad_option")
    if args.retries < 0 or (args.workers is not None and args.workers < 1):
        raise ShapSegError("--retries must be ≥ 0 and --workers ≥ 1", "bad_option")
    require_packages()
    if args.demo:
        from .study.demo_study import write_demo_study
        prepare_folder(Path(args.out).absolute())         # refuses a foreign folder before writing inputs
        manifest = write_demo_study(Path(args.out) / "inputs")
    outcome = run_study(manifest, args.out, args.scheduler, args.workers, args.retries)
    print(f"study: {outcome.tasks} explanations: {outcome.computed} computed, {outcome.reused} reused (finished "
          f"before), {len(outcome.failed)} failed; report: {outcome.out / 'study.md'}")
    for key, error in outcome.failed:
        print(f"  failed: {key}: {error}")
    if outcome.interrupted:
        print("shapseg: interrupted; run the same command again to go on", file=sys.stderr)
        return 130
    return 1 if outcome.failed else 0


def cmd_worker(args) -> int:
    from .run.worker import run_worker
    return run_worker(args.job)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shapseg", description="Shapley explanations of nnU-Net CT segmentations")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="load a CT, model and ROI; report tiles, crop and the target in the ROI")
    p.add_argument("--ct", required=True, help="CT: NIfTI, NRRD, ... or a DICOM folder")
    p.add_argument("--target", required=True, help="target class name or label value")
    add_model_args(p)
    add_roi_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("players", help="split the ROI's surroundings into players; print their table")
    p.add_argument("--ct", required=True, help="CT: NIfTI, NRRD, ... or a DICOM folder")
    p.add_argument("--target", required=True, help="target class name or label value")
    add_model_args(p)
    add_roi_args(p)
    add_player_args(p)
    p.add_argument("--compare", action="store_true", help="build every abstraction and print one line each")
    p.add_argument("--json", action="store_true", help="print JSON (summary and players)")
    p.set_defaults(func=cmd_players)
    p = sub.add_parser("explain", help="Shapley values of the model's output in an ROI over players; write "
                                       "report.png, players.seg.nrrd, attribution.nrrd, tables")
    p.add_argument("--ct", required=True, help="CT: NIfTI, NRRD, ... or a DICOM folder")
    p.add_argument("--target", required=True, help="target class name or label value")
    add_model_args(p)
    add_roi_args(p)
    add_player_args(p)
    add_explain_args(p)
    p.set_defaults(func=cmd_explain)
    from .demo.demo_case import DEMO_SEED
    p = sub.add_parser("demo", help="explain the demo model's false positive on a phantom (no data needed)")
    p.add_argument("--out", default="shapseg_demo", help="output folder (default %(default)s)")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help="phantom seed (default %(default)s)")
    p.add_argument("--model", default=None, help="another model folder (default: ShapSegExplainLib/demo/model)")
    p.add_argument("--budget", type=int, default=None, help="coalitions (default as for explain)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("report", help="re-draw report.png of a finished result from its output files")
    p.add_argument("out", help="the result folder (what --out of explain or demo wrote)")
    p.add_argument("--to", default=None, help="write the PNG here (default: OUT/report.png, replaced)")
    p.add_argument("--window", default=None, choices=("soft_tissue", "bone", "lung"),
                   help="CT window (default: from the target: bone for bones, lung for lungs and airways, "
                        "else soft tissue)")
    p.add_argument("--show-uncertain", action="store_true",
                   help="draw faintly the players whose 95%% interval contains 0 (default: not drawn)")
    p.add_argument("--ct", default=None, help="the CT, for a result without ct_view.nrrd (older versions)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("study", help="explain many cases × settings (a manifest) on a Dask cluster; resumable; "
                                     "writes a report table and plots")
    p.add_argument("manifest", nargs="?", help="study manifest: CSV or YAML (docs/studies.md)")
    p.add_argument("--demo", action="store_true", help="the demo study: phantoms with and without the mimic, "
                                                       "3 abstractions × 2 value functions")
    p.add_argument("--out", required=True, help="study folder: one result folder per case and setting, the report "
                                                "(a rerun skips what finished)")
    p.add_argument("--scheduler", default=None, help="an existing Dask scheduler: tcp://HOST:PORT or a scheduler file "
                                                     "(default: a local cluster for this machine)")
    p.add_argument("--workers", type=int, default=None, help="local cluster: worker processes (default: one per "
                                                             "core or GPU, as memory allows)")
    p.add_argument("--retries", type=int, default=2, help="retries of a task whose worker died or that raised "
                                                          "(default %(default)s)")
    p.set_defaults(func=cmd_study)
    p = sub.add_parser("worker", help="run a job file; JSON lines on stdout (what the Slicer module starts)")
    p.add_argument("job", help="job file (JSON; the fields of ShapSegExplainLib.run.job.ExplainJob)")
    p.set_defaults(func=cmd_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ShapSegError as e:
        print(f"shapseg: error: {e.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # output piped into head & co.
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("shapseg: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line for users, the traceback on --debug
        if args.debug:
            raise
        print(f"shapseg: internal error: {type(e).__name__}: {e} (rerun with --debug for details)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
