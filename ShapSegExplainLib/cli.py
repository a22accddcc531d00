"""The ``shapseg`` command line. Bad input gives one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

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
    g.add_argument("--checkpoint", default="checkpoint_final.pth")
    g.add_argument("--no-mirroring", action="store_true", help="disable mirroring test-time augmentation")
    g.add_argument("--step", type=float, default=0.5, help="tile step size (nnU-Net's default 0.5)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda")
    g.add_argument("--batch-size", type=int, default=4,
                   help="tiles per network call; 1 replays nnU-Net's calls bit for bit (slower on CPU)")


def add_roi_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("region of interest (one of)")
    x = g.add_mutually_exclusive_group(required=True)
    x.add_argument("--roi-mask", help="mask file in the CT's geometry (non-zero = ROI)")
    x.add_argument("--roi-box", help="i0,j0,k0,i1,j1,k1: voxel index corners (inclusive)")
    x.add_argument("--roi-box-ras", help="x0,y0,z0,x1,y1,z1: RAS corners in mm (Slicer's convention)")
    x.add_argument("--roi-point", help="i,j,k: voxel index of a finding; ROI = its connected target component")
    x.add_argument("--roi-point-ras", help="x,y,z: RAS point in mm; ROI = its connected target component")
    g.add_argument("--snap-mm", type=float, default=5.0, help="how far a point may be from the target (mm)")


def load_inputs(args):
    """Model, prepared case, target label and ROI (network grid) from parsed arguments."""
    from .case import prepare_case
    from .model import load_model
    from .roi import ras_to_index, roi_from_box, roi_from_mask, roi_from_point

    model = load_model(args.model, configuration=args.configuration, folds=args.folds,
                       checkpoint=args.checkpoint, use_mirroring=not args.no_mirroring,
                       tile_step_size=args.step, device=args.device, batch_size=args.batch_size)
    target = model.target_label(args.target)
    case = prepare_case(args.ct, model)
    if args.roi_mask:
        roi = roi_from_mask(case, args.roi_mask)
    elif args.roi_box or args.roi_box_ras:
        v = _floats(args.roi_box or args.roi_box_ras, 6, "--roi-box")
        roi = roi_from_box(case, v[:3], v[3:], space="ijk" if args.roi_box else "ras")
    else:
        if args.roi_point:
            index = _floats(args.roi_point, 3, "--roi-point")
        else:
            index = ras_to_index(case, _floats(args.roi_point_ras, 3, "--roi-point-ras"))
        roi = roi_from_point(case, index, target, snap_mm=args.snap_mm)
    return model, case, target, roi


def cmd_inspect(args) -> int:
    """Load everything, report the ROI's tiles and crop and the unperturbed target volume."""
    import numpy as np

    from .evaluator import CoalitionEvaluator, plan_roi

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
    from .players import ABSTRACTIONS, PlayerSettings
    d = PlayerSettings()
    g = p.add_argument_group("players")
    g.add_argument("--players", default=d.abstraction, choices=ABSTRACTIONS,
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
    g.add_argument("--no-slic-anatomy", action="store_true", help="do not cut SLIC regions along the anatomy map")


def player_settings(args, abstraction: str | None = None):
    from .players import PlayerSettings
    return PlayerSettings(abstraction=abstraction or args.players, spacing_mm=args.spacing_mm,
                          margin_mm=args.margin_mm, min_size_ml=args.min_size_ml, speck_ml=args.speck_ml,
                          slic_compactness=args.slic_compactness, slic_segments=args.slic_segments,
                          slic_anatomy=not args.no_slic_anatomy).check()


def cmd_players(args) -> int:
    """Build the players of one abstraction (or all, --compare) and print their summary and table."""
    from .evaluator import plan_roi
    from .player_stats import map_summary, player_table
    from .players import ABSTRACTIONS, anatomy_for_case, players_for_case

    model, case, target, roi = load_inputs(args)
    plan = plan_roi(model, case, roi)
    anatomy = anatomy_for_case(case, plan, player_settings(args), args.anatomy, args.anatomy_labels)
    out = []
    for abstraction in (ABSTRACTIONS if args.compare else (args.players,)):
        pmap = players_for_case(case, plan, player_settings(args, abstraction), anatomy=anatomy)
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
