"""A CT prepared for one model: nnU-Net's own reader and preprocessing, plus the mapping
between the CT's voxel grid and the network's grid in both directions.

Forward (CT -> network) is nnU-Net's order of operations: reader, transpose, crop to
nonzero, (normalise,) resample. Label maps go the same way (``resampling_fn_seg``).
Backward (network -> CT) is nnU-Net's export order: resample, re-insert the crop,
transpose back, and the reader's own ``write_seg`` so the CT geometry comes from the
reader that nnU-Net itself uses.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from ..errors import ShapSegError

if TYPE_CHECKING:                     # a type only: players use Case without importing torch
    from .model import NNUNetModel


SPACING_MM = (0.05, 50.0)             # plausible CT voxel spacing; outside it the header is wrong


def read_ct(path: str | Path) -> sitk.Image:
    """Read a CT (any file SimpleITK reads, or a DICOM folder) and check it is a 3D scalar HU image."""
    path = Path(path)
    if not path.exists():
        raise ShapSegError(f"CT not found: {path}", "ct_not_found")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            files = reader.GetGDCMSeriesFileNames(str(path))
            if not files:
                raise ShapSegError(f"no DICOM series in folder {path}", "bad_ct")
            reader.SetFileNames(files)
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ShapSegError(f"cannot read the CT {path}: {str(e).strip().splitlines()[-1]}", "bad_ct") from e
    check_ct(image, str(path))
    return image


def check_ct(image: sitk.Image, name: str = "CT") -> None:
    """A CT must be 3D, one component, finite, and in Hounsfield units."""
    if image.GetDimension() != 3:
        raise ShapSegError(f"{name} is {image.GetDimension()}D; a 3D CT is needed", "bad_ct")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ShapSegError(f"{name} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                           "a single-channel CT is needed", "bad_ct")
    if min(image.GetSize()) < 2:
        raise ShapSegError(f"{name} has size {image.GetSize()}; a 3D volume is needed", "bad_ct")
    spacing = image.GetSpacing()
    if not all(SPACING_MM[0] <= s <= SPACING_MM[1] for s in spacing):
        raise ShapSegError(f"{name} has voxel spacing {tuple(round(s, 4) for s in spacing)} mm; a CT's lies between "
                           f"{SPACING_MM[0]:g} and {SPACING_MM[1]:g} mm (a header in metres or micrometres?)", "bad_ct")
    arr = sitk.GetArrayViewFromImage(image)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ShapSegError(f"{name} contains {int((~np.isfinite(arr)).sum())} NaN or infinite voxels", "bad_ct")
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0 or hi - lo < 100:
        raise ShapSegError(f"{name} does not look like a CT in Hounsfield units (values {lo:g} to {hi:g}; "
                           "a CT has air near -1000)", "bad_ct")


@dataclass
class Case:
    """A CT and its nnU-Net-preprocessed array (c, X, Y, Z) for one model."""
    ct: sitk.Image
    data: np.ndarray
    properties: dict
    model: NNUNetModel
    _axes: list | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape[1:])

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Network-grid spacing in mm, in network axis order."""
        return tuple(float(s) for s in self.model.configuration_manager.spacing)

    # ----- CT -> network ----------------------------------------------------------------
    def _read_with_reader(self, image: sitk.Image, seg: bool) -> tuple[np.ndarray, dict]:
        reader = self.model.plans_manager.image_reader_writer_class()
        with tempfile.TemporaryDirectory() as tmp:
            f = str(Path(tmp) / "image.nii")
            sitk.WriteImage(image, f, False)
            return reader.read_seg(f) if seg else reader.read_images([f])

    def labels_to_network(self, labels: np.ndarray | sitk.Image, nearest: bool = False) -> np.ndarray:
        """A label map in the CT's geometry (SimpleITK array order or image) on the network grid.

        ``nearest`` resamples with nnU-Net's resampler at order 0 (any number of labels,
        no new boundaries); otherwise with the configuration's ``resampling_fn_seg``."""
        image = self.as_ct_image(labels, np.int16)
        seg, _ = self._read_with_reader(image, seg=True)
        pm, cm = self.model.plans_manager, self.model.configuration_manager
        seg = seg.transpose([0, *[i + 1 for i in pm.transpose_forward]])
        bbox = self.properties["bbox_used_for_cropping"]
        seg = seg[(slice(None), *[slice(a, b) for a, b in bbox])]
        if tuple(seg.shape[1:]) != self.shape:
            spacing = [self.properties["spacing"][i] for i in pm.transpose_forward]
            if nearest:
                from nnunetv2.preprocessing.resampling.default_resampling import (
                    resample_data_or_seg_to_shape,
                )
                seg = resample_data_or_seg_to_shape(seg.astype(np.float32), self.shape, spacing, cm.spacing,
                                                    is_seg=True, order=0, order_z=0)
            else:
                seg = cm.resampling_fn_seg(seg, self.shape, spacing, cm.spacing)
        return np.asarray(seg[0]).astype(np.int32)

    def as_ct_image(self, array: np.ndarray | sitk.Image, dtype=np.int16, name: str = "mask") -> sitk.Image:
        """An array in SimpleITK order with the CT's geometry (checked if already an image)."""
        if isinstance(array, sitk.Image):
            check_same_geometry(self.ct, array, name)
            return array
        array = np.asarray(array)
        if array.shape != sitk.GetArrayViewFromImage(self.ct).shape:
            raise ShapSegError(f"{name} shape {array.shape[::-1]} (x,y,z) differs from the CT's {self.ct.GetSize()}",
                               "bad_mask")
        image = sitk.GetImageFromArray(array.astype(dtype))
        image.CopyInformation(self.ct)
        return image

    def index_to_network(self, ijk: tuple[float, float, float]) -> tuple[int, int, int]:
        """A CT voxel index (i, j, k as SimpleITK counts them) -> nearest network voxel.

        Hand-written: nnU-Net has no point mapping. Reader axis order is found by mapping a
        one-hot coordinate image through the reader (robust to reorienting readers)."""
        pm = self.model.plans_manager
        raw = self._raw_index(ijk)
        t = [raw[i] for i in pm.transpose_forward]
        bbox = self.properties["bbox_used_for_cropping"]
        before = self.properties["shape_after_cropping_and_before_resampling"]
        out = []
        for ax, v in enumerate(t):
            v -= bbox[ax][0]
            scale = self.shape[ax] / before[ax]
            out.append(int(np.clip(np.floor((v + 0.5) * scale), 0, self.shape[ax] - 1)))
        return tuple(out)

    def _raw_index(self, ijk) -> list[float]:
        """Position of CT voxel ijk in the reader's array axes."""
        size = self.ct.GetSize()
        if not all(0 <= c <= s - 1 for c, s in zip(ijk, size)):
            raise ShapSegError(f"point {tuple(round(float(c), 1) for c in ijk)} is outside the CT "
                               f"(size {size})", "roi_outside")
        coords = self._reader_axes()
        point = [int(round(c)) for c in ijk]
        hit = np.argwhere((coords[0] == point[0] + 1) & (coords[1] == point[1] + 1) & (coords[2] == point[2] + 1))
        return [float(v) for v in hit[0]]

    def _reader_axes(self) -> list[np.ndarray]:
        """For each CT axis, an array in the reader's layout holding that CT index + 1."""
        if self._axes is None:
            size = self.ct.GetSize()
            coords = []
            for axis in range(3):
                grid = np.zeros(sitk.GetArrayViewFromImage(self.ct).shape, np.int16)
                idx = np.arange(size[axis], dtype=np.int16) + 1
                shape = [1, 1, 1]
                shape[2 - axis] = size[axis]
                grid[...] = idx.reshape(shape)
                arr, _ = self._read_with_reader(self.as_ct_image(grid), seg=True)
                coords.append(arr[0])
            self._axes = coords
        return self._axes

    def network_to_index(self, points) -> np.ndarray:
        """Continuous network-grid positions (n, 3) -> continuous CT indices (i, j, k), (n, 3).

        The inverse of ``index_to_network``: undo the resampling (voxel centres map as in
        nnU-Net's resize), the crop and the transpose, then the reader's axis permutation,
        which is read off ``_reader_axes`` as an affine map (readers permute and flip)."""
        pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
        pm = self.model.plans_manager
        bbox = self.properties["bbox_used_for_cropping"]
        before = self.properties["shape_after_cropping_and_before_resampling"]
        scale = np.array(self.shape, float) / np.array(before, float)
        t = (pts + 0.5) / scale - 0.5 + np.array([b[0] for b in bbox], float)
        raw = np.empty_like(t)
        raw[:, list(pm.transpose_forward)] = t
        coords = self._reader_axes()
        origin = np.array([c[0, 0, 0] for c in coords], float) - 1
        steps = np.zeros((3, 3))
        for d in range(3):
            e = [0, 0, 0]
            e[d] = 1
            steps[:, d] = np.array([c[tuple(e)] for c in coords], float) - 1 - origin
        return origin + raw @ steps.T

    def network_to_ras(self, points) -> np.ndarray:
        """Continuous network-grid positions (n, 3) -> RAS mm (Slicer's convention), (n, 3)."""
        out = []
        for ijk in self.network_to_index(points):
            x, y, z = self.ct.TransformContinuousIndexToPhysicalPoint([float(v) for v in ijk])
            out.append((-x, -y, z))
        return np.array(out, dtype=np.float64).reshape(-1, 3)

    # ----- network -> CT ----------------------------------------------------------------
    def labels_to_ct(self, labels: np.ndarray, fill: int = 0) -> np.ndarray:
        """A non-negative label map on the network grid -> the CT's grid (SimpleITK order).

        Voxels nnU-Net cropped away get ``fill``. Nearest-neighbour resampling (nnU-Net's
        resampler with order 0) so any number of labels survives."""
        pm, cm = self.model.plans_manager, self.model.configuration_manager
        labels = np.asarray(labels)
        if labels.min() < 0:
            raise ValueError("labels_to_ct needs non-negative labels")
        before = tuple(self.properties["shape_after_cropping_and_before_resampling"])
        seg = labels[None].astype(np.int32)
        if tuple(seg.shape[1:]) != before:
            from nnunetv2.preprocessing.resampling.default_resampling import (
                resample_data_or_seg_to_shape,
            )
            spacing = [self.properties["spacing"][i] for i in pm.transpose_forward]
            seg = resample_data_or_seg_to_shape(seg.astype(np.float32), before, cm.spacing, spacing,
                                                is_seg=True, order=0, order_z=0).astype(np.int32)
        from acvl_utils.cropping_and_padding.bounding_boxes import (
            insert_crop_into_image,
        )
        full = np.full(self.properties["shape_before_cropping"], fill, dtype=np.int32)
        full = insert_crop_into_image(full, seg[0], self.properties["bbox_used_for_cropping"])
        full = full.transpose(pm.transpose_backward)
        return self._write_with_reader(full)

    def _write_with_reader(self, seg: np.ndarray) -> np.ndarray:
        writer = self.model.plans_manager.image_reader_writer_class()
        with tempfile.TemporaryDirectory() as tmp:
            f = str(Path(tmp) / "seg.nii.gz")
            writer.write_seg(seg.astype(np.uint16 if seg.max() > 254 else np.uint8), f, self.properties)
            image = sitk.ReadImage(f)
        if image.GetSize() != self.ct.GetSize():
            image = sitk.Resample(image, self.ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        return sitk.GetArrayFromImage(image).astype(np.int32)


def check_same_geometry(ct: sitk.Image, other: sitk.Image, name: str = "mask", code: str = "bad_mask") -> None:
    """Same size, spacing, origin and direction (to 1e-3 mm / 1e-4)."""
    if other.GetDimension() != 3 or other.GetSize() != ct.GetSize():
        raise ShapSegError(f"{name} size {other.GetSize()} differs from the CT's {ct.GetSize()}", code)
    for what, a, b, tol in (("spacing", other.GetSpacing(), ct.GetSpacing(), 1e-3),
                            ("origin", other.GetOrigin(), ct.GetOrigin(), 1e-2),
                            ("direction", other.GetDirection(), ct.GetDirection(), 1e-4)):
        if not np.allclose(a, b, atol=tol):
            raise ShapSegError(f"{name} {what} {tuple(round(x, 3) for x in a)} differs from the CT's "
                               f"{tuple(round(x, 3) for x in b)}", code)


def prepare_case(ct: sitk.Image | str | Path, model: NNUNetModel) -> Case:
    """Read (if a path) and preprocess a CT with the model's own nnU-Net reader and preprocessor."""
    image = read_ct(ct) if not isinstance(ct, sitk.Image) else ct
    if isinstance(ct, sitk.Image):
        check_ct(image)
    n_channels = len(model.dataset_json.get("channel_names", model.dataset_json.get("modality", {"0": "CT"})))
    if n_channels != 1:
        raise ShapSegError(f"this model expects {n_channels} input channels; ShapSegExplain explains "
                           "single-channel CT models", "unsupported_model")
    case = Case(ct=image, data=np.zeros((1, 1, 1, 1), np.float32), properties={}, model=model)
    raw, props = case._read_with_reader(sitk.Cast(image, sitk.sitkFloat32), seg=False)
    cm = model.configuration_manager
    preprocessor = cm.preprocessor_class(verbose=False)
    data, _, props = preprocessor.run_case_npy(raw, None, props, model.plans_manager, cm, model.dataset_json)
    case.data = np.ascontiguousarray(data, dtype=np.float32)
    case.properties = props
    return case
