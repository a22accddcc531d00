"""Dice of a model on held-out phantoms, and what it predicts on the planted mimic.

Predictions are nnU-Net's own (``predict_logits_from_preprocessed_data`` on the case the
engine prepares, exported back to the CT grid). Seeds 2000+ are never used in training
(the recipe uses 1000+). Run:
  python scripts/evaluate_demo_model.py --model Resources/DemoModel [--cases 4] [--json card.json]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def evaluate(model_dir: str, cases: int, spacing: float) -> dict:
    from ShapSegExplainLib.case import prepare_case
    from ShapSegExplainLib.model import load_model
    from ShapSegExplainLib.phantom import make_phantom
    model = load_model(model_dir, device="cpu")
    names = {int(v): k for k, v in model.dataset_json["labels"].items() if int(v) > 0}
    dice: dict[str, list[float]] = {n: [] for n in names.values()}
    mimic = []
    for i in range(cases):
        ph = make_phantom(seed=2000 + i, spacing=(spacing,) * 3, mimic=True)
        case = prepare_case(ph.ct, model)
        logits = model.predictor.predict_logits_from_preprocessed_data(torch.from_numpy(case.data))
        pred = case.labels_to_ct(np.asarray(model.label_manager.convert_logits_to_segmentation(logits)))
        truth = ph.label_array
        for v, n in names.items():
            a, b = pred == v, truth == v
            if b.any():
                dice[n].append(float(2 * (a & b).sum() / (a.sum() + b.sum())))
        labels_in_mimic = pred[ph.mimic]
        mimic.append({"voxels": int(ph.mimic.sum()),
                      "predicted_kidney_share": float(np.isin(labels_in_mimic, [v for v, n in names.items()
                                                                                  if n.startswith("kidney")]).mean())})
    return {"held_out_cases": cases, "spacing_mm": spacing,
            "dice_mean": {n: round(float(np.mean(d)), 3) for n, d in dice.items() if d},
            "mimic": mimic}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--spacing", type=float, default=3.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    out = evaluate(args.model, args.cases, args.spacing)
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
