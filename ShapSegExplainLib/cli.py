"""The ``shapseg`` command line. Bad input gives one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import json
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ShapSegError as e:
        print(f"shapseg: error: {e.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
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
