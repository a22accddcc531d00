"""A seeded abdominal CT phantom with organ labels, for the demo, tests and model training.

Axial slices of an elliptic body: skin and subcutaneous fat, a muscle wall, visceral fat,
liver (patient's right), spleen (left, posterior), two kidneys beside the spine, aorta,
a vertebral body with cortical rim, and bowel loops holding fluid and air. Organs are
ellipsoids deformed a little per seed and per slice; HU values are those of a portal
venous CT. Partial volume comes from building on a grid twice as fine and averaging down;
noise is Gaussian. Optionally a *mimic*: a kidney-bright blob in the fat next to a kidney
that is not labelled, the false positive the demo explains.

The image is in LPS with identity direction: i grows to the patient's left, j to the
back, k to the head, as in a DICOM axial series.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney_left": 3, "kidney_right": 4, "aorta": 5,
          "vertebra": 6, "bowel": 7}
HU = {"air": -1000.0, "fat": -100.0, "muscle": 55.0, "liver": 105.0, "spleen": 115.0, "kidney": 165.0,
      "aorta": 185.0, "cortical": 750.0, "marrow": 260.0, "bowel_wall": 45.0, "fluid": 12.0, "gas": -900.0}


@dataclass
class Phantom:
    ct: sitk.Image
    labels: sitk.Image
    names: dict[int, str]
    mimic: np.ndarray | None

    @property
    def label_array(self) -> np.ndarray:
        return sitk.GetArrayFromImage(self.labels)


def make_phantom(seed: int = 0, size_mm=(330.0, 250.0, 120.0), spacing=(1.5, 1.5, 3.0), mimic: bool = False,
                 noise_hu: float = 12.0) -> Phantom:
    """A phantom CT (int16 HU) and its label map; ``spacing`` and ``size_mm`` are (x, y, z)."""
    rng = np.random.default_rng(seed)
    spacing = np.asarray(spacing, float)
    shape = tuple(int(round(s / d)) for s, d in zip(size_mm[::-1], spacing[::-1]))  # (z, y, x)
    fine = _points(tuple(2 * s for s in shape), spacing[::-1] / 2.0, size_mm[::-1])
    hu, labels, mimic_mask = _paint(fine, rng, size_mm, mimic)
    hu = hu.reshape(shape[0], 2, shape[1], 2, shape[2], 2).mean(axis=(1, 3, 5))
    labels = labels[::2, ::2, ::2]
    mimic_mask = mimic_mask[::2, ::2, ::2] if mimic else None
    hu = hu + rng.normal(0.0, noise_hu, hu.shape)
    ct = sitk.GetImageFromArray(np.clip(np.round(hu), -1024, 3071).astype(np.int16))
    lab = sitk.GetImageFromArray(labels.astype(np.uint8))
    for img in (ct, lab):
        img.SetSpacing(tuple(float(s) for s in spacing))
        img.SetOrigin((-size_mm[0] / 2, -size_mm[1] / 2, 0.0))
    return Phantom(ct=ct, labels=lab, names={v: k for k, v in LABELS.items() if v}, mimic=mimic_mask)


def _points(shape, step_zyx, size_zyx):
    """Voxel-centre coordinates in mm, centred in x and y, z from the bottom: (z, y, x) arrays."""
    axes = [(np.arange(n) + 0.5) * d - (s / 2 if i else 0.0) for i, (n, d, s) in enumerate(zip(shape, step_zyx, size_zyx))]
    return np.meshgrid(*axes, indexing="ij")


def _ellipsoid(p, centre, radii, rng=None, wobble=0.0):
    """Inside test for an ellipsoid (x, y, z centre and radii in mm), radii varied along z."""
    z, y, x = p
    cx, cy, cz = centre
    rx, ry, rz = radii
    scale = 1.0
    if rng is not None and wobble:
        phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(0.02, 0.05)
        scale = 1.0 + wobble * np.sin(freq * z + phase)
    return ((x - cx) / (rx * scale)) ** 2 + ((y - cy) / (ry * scale)) ** 2 + ((z - cz) / rz) ** 2 <= 1.0


def _paint(p, rng, size_mm, mimic):
    z, y, x = p
    w, h, depth = size_mm
    j = lambda s: rng.uniform(-s, s)  # noqa: E731 - small jitter in mm
    hu = np.full(z.shape, HU["air"], np.float32)
    labels = np.zeros(z.shape, np.uint8)
    bx, by = 0.46 * w + j(5), 0.42 * h + j(5)
    body = (x / bx) ** 2 + (y / by) ** 2 <= 1.0
    inner = (x / (bx - 18)) ** 2 + (y / (by - 16)) ** 2 <= 1.0
    cavity = (x / (bx - 30)) ** 2 + (y / (by - 28)) ** 2 <= 1.0
    hu[body] = HU["fat"]
    hu[inner] = HU["muscle"]
    hu[cavity] = HU["fat"]
    mid = depth / 2
    spine_y = 0.55 * by
    organs = [
        ("liver", "liver", (-0.42 * bx + j(6), -0.05 * by + j(6), mid + 15 + j(5)), (70, 62, 65), 0.06),
        ("spleen", "spleen", (0.55 * bx + j(5), 0.30 * by + j(5), mid + 25 + j(5)), (30, 42, 45), 0.08),
        ("kidney_right", "kidney", (-0.38 * bx + j(4), spine_y - 8 + j(4), mid - 12 + j(4)), (24, 30, 45), 0.05),
        ("kidney_left", "kidney", (0.38 * bx + j(4), spine_y - 8 + j(4), mid - 5 + j(4)), (24, 30, 45), 0.05),
    ]
    for name, tissue, c, r, wob in organs:
        m = _ellipsoid(p, c, r, rng, wob) & cavity
        hu[m], labels[m] = HU[tissue], LABELS[name]
    _bowel(p, rng, hu, labels, cavity, bx, by, mid)
    aorta = ((x - 12 - j(3)) ** 2 + (y - spine_y + 38) ** 2 <= 11.0 ** 2) & cavity
    hu[aorta], labels[aorta] = HU["aorta"], LABELS["aorta"]
    vert = (x ** 2 + ((y - spine_y) / 0.9) ** 2) <= 22.0 ** 2
    hu[vert] = HU["cortical"]
    hu[(x ** 2 + ((y - spine_y) / 0.9) ** 2) <= 19.0 ** 2] = HU["marrow"]
    labels[vert] = LABELS["vertebra"]
    mimic_mask = np.zeros(z.shape, bool)
    if mimic:
        kc = organs[3][2]
        c = (kc[0] + 18 + j(3), kc[1] - 28 + j(3), kc[2] - 22 + j(4))
        mimic_mask = _ellipsoid(p, c, (9, 10, 12)) & cavity & (labels == 0)
        hu[mimic_mask] = HU["kidney"]
    return hu, labels, mimic_mask


def _bowel(p, rng, hu, labels, cavity, bx, by, mid):
    """Bowel loops anterior and to the left: a wall, fluid, and an air pocket at the top (anterior)."""
    z, y, x = p
    for _ in range(5):
        c = (rng.uniform(-0.05, 0.45) * bx, rng.uniform(-0.65, -0.25) * by, mid + rng.uniform(-30, 30))
        r = rng.uniform(14, 22)
        loop = _ellipsoid(p, c, (r, r, 2.2 * r)) & cavity & (labels == 0)
        lumen = _ellipsoid(p, c, (r - 3, r - 3, 2.2 * r - 3)) & loop
        hu[loop], labels[loop] = HU["bowel_wall"], LABELS["bowel"]
        hu[lumen] = HU["fluid"]
        hu[lumen & (y < c[1] - 0.3 * r)] = HU["gas"]
