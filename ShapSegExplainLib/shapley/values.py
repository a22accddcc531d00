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

from .. import choices
from ..errors import ShapSegError

Formula = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


@dataclass(frozen=True)
class ValueKind:
    """One thing to explain: ``formula(pred, y, voxel_ml)`` sums the ROI's voxels into one value
    per coalition (``pred`` (k, n) float64: the target's label indicator, or its probability
    when ``soft``; ``y`` (n,) the reference), in ``unit``. ``reference``: what ``y`` is when the
    user gives none, the unperturbed prediction (``"prediction"``) or nothing (``"none"``)."""
    name: str
    formula: Formula
    unit: str = ""
    soft: bool = False
    reference: str = "prediction"


def _tp(pred, y, voxel_ml):
    return (pred * y).sum(-1) * voxel_ml


def _fp(pred, y, voxel_ml):
    return (pred * (1 - y)).sum(-1) * voxel_ml


def _dice(pred, y, voxel_ml):
    den = pred.sum(-1) + y.sum()
    return torch.where(den > 0, 2 * (pred * y).sum(-1) / den.clamp_min(1e-300), torch.ones_like(den))


VALUE_KINDS: dict[str, ValueKind] = {}


def register_value(kind: ValueKind) -> ValueKind:
    """Add a value function: jobs, ``shapseg explain --value`` (parsed after this) and the API
    accept its name from now on (docs/extending.md)."""
    if kind.reference not in ("prediction", "none"):
        raise ValueError(f"reference must be 'prediction' or 'none', not {kind.reference!r}")
    VALUE_KINDS[kind.name] = kind
    choices.add("value", kind.name)
    return kind


for _kind in (ValueKind("tp", _tp, "mL"), ValueKind("dice", _dice), ValueKind("soft_dice", _dice, soft=True),
              ValueKind("fp", _fp, "mL", reference="none"), ValueKind("soft_fp", _fp, "mL", soft=True, reference="none")):
    register_value(_kind)


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
        return "" if self.normalized else VALUE_KINDS[self.name].unit

    def __post_init__(self) -> None:
        self._y = torch.from_numpy(np.asarray(self.reference, dtype=np.float64))   # built once: raw() runs per coalition

    def raw(self, logits: torch.Tensor) -> np.ndarray:
        kind = VALUE_KINDS[self.name]
        if kind.soft:
            pred = self.prob_fn(logits, self.target).to(torch.float64)
        else:
            pred = (self.labels_fn(logits) == self.target).to(torch.float64)
        return kind.formula(pred, self._y, self.voxel_ml).numpy().astype(np.float64)

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
    if name not in VALUE_KINDS:
        raise ShapSegError(f"unknown value '{name}' (use {', '.join(VALUE_KINDS)})", "bad_option")
    n = unperturbed_logits.shape[-1]
    if reference is not None:
        reference = np.asarray(reference, bool).reshape(-1)
        if reference.size != n:
            raise ShapSegError(f"the reference has {reference.size} ROI voxels, the ROI {n}", "bad_reference")
    elif VALUE_KINDS[name].reference == "none":
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

