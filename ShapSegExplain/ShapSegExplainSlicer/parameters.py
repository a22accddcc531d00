"""What the panel holds (the parameter node, saved with the scene), its choices as the combo
boxes show them, and the names the module's nodes and registrations carry."""
from __future__ import annotations

import enum
import pathlib
from typing import Annotated

from slicer import (vtkMRMLMarkupsFiducialNode, vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode,
                    vtkMRMLSegmentationNode)
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper

RESULT_ATTRIBUTE = "ShapSegExplain.Result"      # result folder, on each result segmentation node
RESULT_JSON_ATTRIBUTE = "ShapSegExplain.Explanation"   # explanation.json itself: saved with the scene
TABLE_REFERENCE = "ShapSegExplainTable"
SAMPLE_CATEGORY = "ShapSeg Explain"             # the demo phantom in Sample Data
SAMPLE_NAME = "ShapSegExplainDemoPhantom"


#
# Choices shown in combo boxes (labels are what the user reads; values what the job says)
#
class Device(enum.Enum):
    AUTO = "auto"
    CUDA = "cuda"
    CPU = "cpu"

    def label(self) -> str:
        return {"auto": _("Automatic (GPU if present)"), "cuda": _("GPU (CUDA)"), "cpu": _("CPU")}[self.value]


class Region(enum.Enum):
    POINT = "point"
    BOX = "box"
    SEGMENT = "segment"

    def label(self) -> str:
        return {"point": _("Point on a finding"), "box": _("Box (ROI)"),
                "segment": _("Segment (painted, imported or AI)")}[self.value]


class Players(enum.Enum):
    HYBRID = "hybrid"
    ORGAN = "organ"
    FCC = "fcc"
    SLIC = "slic"

    def label(self) -> str:
        return {"hybrid": _("Organ-aware supervoxels (hybrid)"), "organ": _("Whole organs"),
                "fcc": _("Regular supervoxels (FCC)"), "slic": _("Image-driven supervoxels (SLIC)")}[self.value]


class Value(enum.Enum):
    SOFT_DICE = "soft_dice"
    DICE = "dice"
    TP = "tp"
    FP = "fp"
    SOFT_FP = "soft_fp"

    def label(self) -> str:
        return {"soft_dice": _("Soft Dice"), "dice": _("Dice"), "tp": _("True-positive volume"),
                "fp": _("False-positive volume"), "soft_fp": _("Soft false-positive volume")}[self.value]


@parameterNodeWrapper
class ShapSegExplainParameterNode:
    """Everything the panel holds; saved with the scene."""
    inputVolume: vtkMRMLScalarVolumeNode
    modelPath: pathlib.Path
    configuration: str = ""
    folds: str = ""
    targetClass: str = ""
    device: Device = Device.AUTO
    mirroring: bool = False
    region: Region = Region.POINT
    pointNode: vtkMRMLMarkupsFiducialNode
    roiNode: vtkMRMLMarkupsROINode
    snapMm: Annotated[float, WithinRange(0, 50)] = 5.0
    regionSegmentation: vtkMRMLSegmentationNode
    regionSegmentId: str = ""
    regionIsland: Annotated[int, WithinRange(0, 100000)] = 0     # 0: all pieces, k: the k-th largest
    referenceSegmentation: vtkMRMLSegmentationNode
    referenceSegmentId: str = ""
    referenceIsland: Annotated[int, WithinRange(0, 100000)] = 0  # 0: the whole reference segment, k: its k-th piece
    players: Players = Players.HYBRID
    spacingMm: Annotated[float, WithinRange(3, 100)] = 15.0
    marginMm: Annotated[float, WithinRange(0, 200)] = 20.0
    minSizeMl: Annotated[float, WithinRange(0, 1000)] = 0.0
    fixedContext: bool = False
    anatomySegmentation: vtkMRMLSegmentationNode
    value: Value = Value.SOFT_DICE
    normalized: bool = False
    budget: Annotated[int, WithinRange(0, 100000)] = 0
    timeLimitS: Annotated[float, WithinRange(0, 86400)] = 0.0
    seed: Annotated[int, WithinRange(0, 2147483647)] = 0
    topK: Annotated[int, WithinRange(0, 10000)] = 0
    minAbsPhi: Annotated[float, WithinRange(0, 1000000)] = 0.0
    showAllResults: bool = False
    showUncertain: bool = False
    resultSegmentation: vtkMRMLSegmentationNode
