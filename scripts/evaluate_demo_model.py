"""Dice of a model on held-out phantoms, what it predicts on the planted mimic, and the
model card (``--card``).

Predictions are nnU-Net's own (``predict_logits_from_preprocessed_data`` on the case the
engine prepares, exported back to the CT grid). Seeds 2000+ are never used in training
(the recipe uses 1000+). Run:
  python scripts/evaluate_demo_model.py --model ShapSegExplainLib/demo/model [--cases 4] [--json out.json]
      [--card ShapSegExplainLib/demo/model/MODEL_CARD.md]
The card's recipe comes from ``training.json``, which ``scripts/train_demo_model.py`` writes.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def evaluate(model_dir: str, cases: int, spacing: tuple[float, float, float]) -> dict:
    from ShapSegExplainLib.nnunet.case import prepare_case
    from ShapSegExplainLib.nnunet.model import load_model
    from ShapSegExplainLib.demo.phantom import make_phantom
    model = load_model(model_dir, device="cpu")
    names = {int(v): k for k, v in model.dataset_json["labels"].items() if int(v) > 0}
    dice: dict[str, list[float]] = {n: [] for n in names.values()}
    mimic = []
    for i in range(cases):
        ph = make_phantom(seed=2000 + i, spacing=spacing, mimic=True)
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
    return {"held_out_cases": cases, "spacing_mm": list(spacing), "mirroring": bool(model.mirror_axes),
            "dice_mean": {n: round(float(np.mean(d)), 3) for n, d in dice.items() if d},
            "mimic": mimic}


def write_card(path: Path, model_dir: Path, ev: dict) -> None:
    """A short model card: what it is, the recipe, its size, Dice on held-out phantoms."""
    train = json.loads((model_dir / "training.json").read_text()) if (model_dir / "training.json").is_file() else {}
    plans = json.loads((model_dir / "plans.json").read_text())["configurations"]["3d_fullres"]
    size = sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file()) / 2 ** 20
    dice = "\n".join(f"| {n} | {d:.3f} |" for n, d in ev["dice_mean"].items())
    stopped = (f"- **Stopped early**: after epoch {train.get('epochs_done')} of the {train.get('epochs')}-epoch schedule "
               f"(time); the weights are nnU-Net's `checkpoint_best.pth` (best EMA pseudo-Dice "
               f"{train.get('best_ema_pseudo_dice', float('nan')):.3f}), saved as `fold_0/checkpoint_final.pth`.\n"
               if train.get("stopped_early") else "")
    shares = ", ".join(f"{m['predicted_kidney_share']:.0%}" for m in ev["mimic"])
    text = f"""# ShapSegExplain demo model (nnU-Net v2, 3d_fullres)

**For the demo and tests only.** Trained on synthetic phantoms (`ShapSegExplainLib.demo.phantom`); it
has never seen a patient and must not be used on real scans.

- **Classes**: {", ".join(k for k in json.loads((model_dir / "dataset.json").read_text())["labels"])}
- **Recipe**: `{train.get("command", "python scripts/train_demo_model.py ...")}`: {train.get("cases", "?")} phantoms
  (seeds 1000+, {train.get("spacing_mm", "?")} mm), nnU-Net's own fingerprint, plan and preprocessing; the plan's
  features per stage divided by 4 (capped at {train.get("max_features", "?")}), patch {plans["patch_size"]},
  `{train.get("trainer", "?")}` with {train.get("iterations", "?")} iterations per epoch, on CPU
  ({train.get("train_seconds", 0) / 60:.0f} min on {train.get("machine", "?")}).
{stopped}- **Network**: spacing {plans["spacing"]} mm, features {plans["architecture"]["arch_kwargs"]["features_per_stage"]}.
- **Size**: {size:.1f} MiB (fold 0, final checkpoint without the optimizer state).

## Dice on {ev["held_out_cases"]} held-out phantoms (seeds 2000+, spacing {ev["spacing_mm"]} mm, mirroring {"on" if ev["mirroring"] else "off"})

| class | mean Dice |
|---|---|
{dice}

## The mimic
Every held-out phantom carries a kidney-bright blob next to the left kidney that is not
labelled. Share of its voxels the model calls kidney: {shares}. This false positive is what
`shapseg demo` explains.

Reproduce: `python scripts/evaluate_demo_model.py --model ShapSegExplainLib/demo/model --cases {ev["held_out_cases"]} --card ShapSegExplainLib/demo/model/MODEL_CARD.md`
"""
    path.write_text(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--spacing", type=float, nargs=3, default=(1.5, 1.5, 3.0),
                    help="phantom spacing x y z in mm (default: the demo's, 1.5 1.5 3)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--card", default=None, help="write the model card (Markdown) here")
    args = ap.parse_args(argv)
    out = evaluate(args.model, args.cases, tuple(args.spacing))
    if args.card:
        write_card(Path(args.card), Path(args.model), out)
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
