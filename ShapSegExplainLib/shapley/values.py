"""Value functions: what is explained, computed from the fused ROI logits of coalitions.

On the ROI R, target class c, reference Y (bool over R):

* ``tp``        Σ_R [pred = c]·Y                       (mL)
* ``dice``      2 Σ [pred = c]·Y / (Σ [pred = c] + Σ Y)
* ``soft_dice`` 2 Σ p_c·Y / (Σ p_c + Σ Y)
* ``fp``        Σ_R [pred = c]·(1 - Y_ref)              (mL)
* ``soft_fp``   Σ_R p_c·(1 - Y_ref)                     (mL)

``pred`` is the model's own label rule (nnU-Net's label manager: argmax, or its region
rule); ``p_c`` the softmax probability of c (sigmoid of c's channel for region models).
Y defaults to the unperturbed prediction of c in R; for ``fp``/``soft_fp`` Y_ref is the
user's reference mask, or nothing (then every predicted voxel of c in R counts: the
click-a-false-positive workflow, where R *is* the suspicious region). ``normalized``
divides by the unperturbed value, so the full coalition has value 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..choices import VALUES
from ..errors import ShapSegError

UNITS = {"tp": "mL", "dice": "", "soft_dice": "", "fp": "mL", "soft_fp": "mL"}


@dataclass
class ValueFunction:
    """Maps ROI logits (k, C, n) to k values."""
    name: str
    target: int
    reference: np.ndarray
    voxel_ml: float
    labels_fn: Callable[[torch.Tensor], torch.Tensor]
    prob_fn: Callable[[torch.Tensor, int], torch.Tensor]
    normalized: bool = False
    scale: float = 1.0

    @property
    def unit(self) -> str:
        return "" if self.normalized else UNITS[self.name]

    def __post_init__(self) -> None:
        self._y = torch.from_numpy(np.asarray(self.reference, dtype=np.float64))   # built once: raw() runs per coalition

    def raw(self, logits: torch.Tensor) -> np.ndarray:
        y = self._y
        if self.name in ("tp", "dice", "fp"):
            pred = (self.labels_fn(logits) == self.target).to(torch.float64)
        else:
            pred = self.prob_fn(logits, self.target).to(torch.float64)
        if self.name == "tp":
            v = (pred * y).sum(-1) * self.voxel_ml
        elif self.name in ("fp", "soft_fp"):
            v = (pred * (1 - y)).sum(-1) * self.voxel_ml
        else:
            den = pred.sum(-1) + y.sum()
            v = torch.where(den > 0, 2 * (pred * y).sum(-1) / den.clamp_min(1e-300), torch.ones_like(den))
        return v.numpy().astype(np.float64)

    def __call__(self, logits: torch.Tensor) -> np.ndarray:
        """One coalition at a time: PyTorch's CPU softmax and sums round differently with the
        batch's shape, and a coalition's value must not depend on its batch mates (chunks are
        paced by the clock near a time limit, and a resumed run replays the values of another
        run's chunks: ``run.journal``)."""
        rows = [self.raw(logits[i:i + 1]) for i in range(logits.shape[0])]
        return (np.concatenate(rows) if rows else np.zeros(0)) / self.scale


def softmax_probability(logits: torch.Tensor, target: int) -> torch.Tensor:
    """Softmax probability of class ``target`` over the channel axis, in float32."""
    return torch.softmax(logits.float(), dim=1)[:, target]


def make_value_function(name: str, target: int, unperturbed_logits: torch.Tensor, voxel_ml: float,
                        labels_fn, prob_fn=softmax_probability, reference: np.ndarray | None = None,
                        normalized: bool = False) -> ValueFunction:
    """A value function; ``unperturbed_logits`` (1, C, n) give Y's default and the normaliser."""
    if name not in VALUES:
        raise ShapSegError(f"unknown value '{name}' (use {', '.join(VALUES)})", "bad_option")
    n = unperturbed_logits.shape[-1]
    if reference is not None:
        reference = np.asarray(reference, bool).reshape(-1)
        if reference.size != n:
            raise ShapSegError(f"the reference has {reference.size} ROI voxels, the ROI {n}", "bad_reference")
    elif name in ("fp", "soft_fp"):
        reference = np.zeros(n, bool)
    else:
        reference = (labels_fn(unperturbed_logits)[0] == target).numpy()
    vf = ValueFunction(name, int(target), reference, float(voxel_ml), labels_fn, prob_fn)
    if normalized:
        base = float(vf.raw(unperturbed_logits)[0])
        if not abs(base) > 1e-12:
            raise ShapSegError(f"cannot normalise '{name}': its unperturbed value is 0 (the model predicts no "
                               "target there, or the reference and the prediction do not overlap)", "bad_option")
        vf.normalized, vf.scale = True, base
    return vf


def value_function_for(model, name: str, target: int, unperturbed_logits: torch.Tensor, voxel_ml: float,
                       reference: np.ndarray | None = None, normalized: bool = False) -> ValueFunction:
    """A value function with the model's own label rule and nonlinearity (nnU-Net's label manager)."""
    from ..nnunet.evaluator import roi_labels

    def labels_fn(logits):
        return roi_labels(model, logits)

    def prob_fn(logits, c):
        probs = model.label_manager.apply_inference_nonlin(logits.float().permute(1, 0, 2))
        return torch.as_tensor(probs)[c]

    return make_value_function(name, target, unperturbed_logits, voxel_ml, labels_fn, prob_fn, reference,
                               normalized)
