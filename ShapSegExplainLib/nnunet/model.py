"""Load an nnU-Net v2 results folder and run tiles through it exactly as nnU-Net does.

Everything numerical is nnU-Net's own code: nnU-Net's plans, trainer class and network
builder make the network and ``nnUNetPredictor.manual_initialization`` takes it with the
weights, which ``checkpoint.read_checkpoint`` reads without unrestricted unpickling (nnU-Net's
own loader would run whatever a crafted checkpoint holds); ``_internal_maybe_mirror_and_predict``
runs one batch with mirroring TTA, and ``compute_gaussian`` gives the importance map.
This module only keeps one network per fold (so an ensemble needs no reloading of
state dicts between batches) and applies nnU-Net's Gaussian weighting to a batch.
"""
from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..choices import DEVICES
from ..errors import ShapSegError

CHECKPOINT = "checkpoint_final.pth"
MODEL_FIELDS = ("configuration", "folds", "checkpoint", "mirroring", "step", "device", "batch_size", "trust_checkpoint",
                "max_memory_gb")


@dataclass(frozen=True)
class ModelSettings:
    """How to load and run a model (defaults = what ``nnUNetv2_predict`` does). The field
    names are the job's and the command line's (``--no-mirroring`` sets ``mirroring``)."""
    model_dir: str
    configuration: str | None = None
    folds: Sequence[int | str] | None = None
    checkpoint: str = CHECKPOINT
    mirroring: bool = True
    step: float = 0.5                  # nnU-Net's tile_step_size
    device: str = "auto"
    batch_size: int = 0                # tiles per network call; 0 = chosen from memory (``nnunet.memory``)
    trust_checkpoint: bool = False     # unpickle anything in the checkpoint (the user trusts the folder)
    max_memory_gb: float | None = None  # host memory for the tile memo and a CPU batch (``nnunet.memory``)

    @classmethod
    def of(cls, source) -> "ModelSettings":
        """The settings a job (or parsed ``shapseg`` options) describes: same-named fields."""
        return cls(model_dir=str(source.model), **{f: getattr(source, f) for f in MODEL_FIELDS})


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ShapSegError(f"unknown device '{device}' (use {', '.join(DEVICES)} or cuda:N)", "bad_device")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ShapSegError("device 'cuda' requested but no CUDA GPU is available", "bad_device")
    return torch.device(device)


def resolve_model_dir(path: str | Path, configuration: str | None = None) -> Path:
    """The results folder holding plans.json; a dataset folder with several
    ``Trainer__Plans__configuration`` subfolders is resolved by configuration."""
    path = Path(path)
    if not path.is_dir():
        raise ShapSegError(f"model folder not found: {path}", "model_not_found")
    if (path / "plans.json").is_file() and (path / "dataset.json").is_file():
        return path
    candidates = sorted(p for p in path.iterdir() if p.is_dir() and (p / "plans.json").is_file())
    if configuration:
        candidates = [p for p in candidates if p.name.split("__")[-1] == configuration]
    elif len(candidates) > 1:
        full = [p for p in candidates if p.name.endswith("3d_fullres")]
        candidates = full or candidates
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ShapSegError(f"{path} is not an nnU-Net v2 results folder (no plans.json and dataset.json)",
                           "not_a_model")
    names = ", ".join(p.name for p in candidates)
    raise ShapSegError(f"{path} holds several models ({names}); choose one with --configuration", "ambiguous_model")


def available_folds(model_dir: Path, checkpoint: str) -> list[int | str]:
    """Folds with the checkpoint present, numeric ones first, 'all' only if nothing else."""
    found = [p.name.split("_", 1)[1] for p in model_dir.glob("fold_*") if (p / checkpoint).is_file()]
    numeric = sorted(int(f) for f in found if f.isdigit())
    return numeric or (["all"] if "all" in found else [])


def _check_folds(model_dir: Path, folds: Sequence[int | str] | None, checkpoint: str) -> list[int | str]:
    present = available_folds(model_dir, checkpoint)
    if folds is None or len(folds) == 0:
        if not present:
            raise ShapSegError(f"no fold_*/{checkpoint} in {model_dir}", "missing_checkpoint")
        return present
    out: list[int | str] = []
    for f in folds:
        f = "all" if str(f) == "all" else int(f)
        if not (model_dir / f"fold_{f}" / checkpoint).is_file():
            raise ShapSegError(f"missing checkpoint {model_dir / f'fold_{f}' / checkpoint} "
                               f"(available folds: {present or 'none'})", "missing_checkpoint")
        out.append(f)
    return out


class NNUNetModel:
    """An initialised ``nnUNetPredictor`` plus one network per fold."""

    def __init__(self, settings: ModelSettings) -> None:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        self.settings = settings
        self.model_dir = resolve_model_dir(settings.model_dir, settings.configuration)
        self.folds = _check_folds(self.model_dir, settings.folds, settings.checkpoint)
        self.device = resolve_device(settings.device)
        if not 0 < settings.step <= 1:
            raise ShapSegError(f"tile step size must be in (0, 1], got {settings.step}", "bad_option")
        if settings.batch_size < 0:
            raise ShapSegError(f"batch size must be >= 1 (or 0: from memory), got {settings.batch_size}", "bad_option")
        with contextlib.redirect_stdout(io.StringIO()):
            self.predictor = nnUNetPredictor(tile_step_size=settings.step, use_gaussian=True,
                                             use_mirroring=settings.mirroring,
                                             perform_everything_on_device=self.device.type == "cuda",
                                             device=self.device, verbose=False, allow_tqdm=False)
        self._initialise()
        self.networks = self._fold_networks()
        self._gaussian: torch.Tensor | None = None
        self.batch_choice = None        # set on first use when the batch size comes from memory
        self.oom_cap: int | None = None  # set when CUDA ran out of memory (``TileRunner``): later batches stay below
        self.batch_halvings: list[int] = []     # the batch after each such error (explanation.json: model)

    def _initialise(self) -> None:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self._initialise_predictor()
        except ShapSegError:
            raise
        except Exception as e:  # noqa: BLE001 - anything nnU-Net raises on a broken folder
            detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
            if "NoneType" in detail and "build_network_architecture" in detail:
                detail = f"trainer class '{self._trainer_name()}' is not installed"
            raise ShapSegError(f"cannot load the nnU-Net model in {self.model_dir}: {type(e).__name__}: {detail}",
                               "bad_model") from e

    def _initialise_predictor(self) -> None:
        """``nnUNetPredictor.initialize_from_trained_model_folder``'s steps with nnU-Net's own
        parts (plans, trainer class, network builder, ``manual_initialization``), except that
        the checkpoints are read by ``read_checkpoint`` instead of an unrestricted unpickling."""
        import inspect

        from batchgenerators.utilities.file_and_folder_operations import load_json
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        from .checkpoint import read_checkpoint
        dataset_json = load_json(str(self.model_dir / "dataset.json"))
        plans_manager = PlansManager(load_json(str(self.model_dir / "plans.json")))
        checkpoints = [read_checkpoint(self._checkpoint_path(f), self.settings.trust_checkpoint) for f in self.folds]
        first = checkpoints[0]
        configuration = first["init_args"]["configuration"]
        configuration_manager = plans_manager.get_configuration(configuration)
        if len(configuration_manager.patch_size) != 3:        # before a 2D network is built
            raise ShapSegError(f"the model in {self.model_dir} is nnU-Net's 2D configuration '{configuration}'; "
                               "ShapSegExplain explains 3D configurations (3d_fullres, 3d_lowres)", "unsupported_model")
        trainer_name = first["trainer_name"]
        trainer_class = find_trainer_class(trainer_name)
        if trainer_class is None:
            raise ShapSegError(f"cannot load the nnU-Net model in {self.model_dir}: trainer class '{trainer_name}' "
                               "is not installed (nnU-Net looks in nnunetv2.training and $nnUNet_extTrainer)",
                               "bad_model")
        channels = (determine_num_input_channels(plans_manager, configuration_manager, dataset_json),
                    plans_manager.get_label_manager(dataset_json).num_segmentation_heads)
        if "plans_manager" in inspect.signature(trainer_class.build_network_architecture).parameters:
            network = trainer_class.build_network_architecture(plans_manager, configuration_manager, *channels,
                                                               enable_deep_supervision=False)
        else:                # the older signature nnU-Net still accepts
            c = configuration_manager
            network = trainer_class.build_network_architecture(
                c.network_arch_class_name, c.network_arch_init_kwargs, c.network_arch_init_kwargs_req_import,
                *channels, enable_deep_supervision=False)
        parameters = [c["network_weights"] for c in checkpoints]
        network.load_state_dict(parameters[0])
        self.predictor.manual_initialization(network, plans_manager, configuration_manager, parameters, dataset_json,
                                             trainer_name, first.get("inference_allowed_mirroring_axes"))

    def _checkpoint_path(self, fold) -> Path:
        return self.model_dir / f"fold_{fold}" / self.settings.checkpoint

    def _trainer_name(self) -> str:
        from .checkpoint import read_checkpoint
        try:
            return str(read_checkpoint(self._checkpoint_path(self.folds[0])).get("trainer_name", "?"))
        except Exception:  # noqa: BLE001
            return "?"

    def _fold_networks(self) -> list[torch.nn.Module]:
        base = self.predictor.network
        nets = []
        for params in self.predictor.list_of_parameters:
            net = copy.deepcopy(base)
            net.load_state_dict(params)
            nets.append(net.to(self.device).eval())
        return nets

    # ----- facts about the model -------------------------------------------------------------
    @property
    def patch_size(self) -> tuple[int, int, int]:
        return tuple(int(p) for p in self.predictor.configuration_manager.patch_size)

    @property
    def plans_manager(self):
        return self.predictor.plans_manager

    @property
    def configuration_manager(self):
        return self.predictor.configuration_manager

    @property
    def dataset_json(self) -> dict:
        return self.predictor.dataset_json

    @property
    def label_manager(self):
        return self.predictor.label_manager

    @property
    def labels(self) -> dict[str, int]:
        """Label name -> value from dataset.json (region-based labels keep their first value)."""
        out = {}
        for name, v in self.dataset_json["labels"].items():
            out[name] = int(v[0] if isinstance(v, (list, tuple)) else v)
        return out

    @property
    def num_outputs(self) -> int:
        return int(self.label_manager.num_segmentation_heads)

    @property
    def num_inputs(self) -> int:
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
        return int(determine_num_input_channels(self.plans_manager, self.configuration_manager, self.dataset_json))

    @property
    def batch_size(self) -> int:
        """Tiles per network call: the setting, or (0) the largest that memory allows, chosen once;
        never above a batch that ran CUDA out of memory."""
        if self.settings.batch_size > 0:
            size = int(self.settings.batch_size)
        else:
            if self.batch_choice is None:
                from .memory import choose_batch_size
                self.batch_choice = choose_batch_size(self)
            size = self.batch_choice.size
        return min(size, self.oom_cap or size)

    @property
    def mirror_axes(self) -> tuple[int, ...] | None:
        axes = self.predictor.allowed_mirroring_axes if self.settings.mirroring else None
        return tuple(axes) if axes else None

    @property
    def passes_per_tile(self) -> int:
        """Network passes per tile forward: mirror combinations x folds."""
        n_axes = len(self.mirror_axes or ())
        return (2 ** n_axes) * len(self.networks)

    def target_label(self, target: str | int) -> int:
        """Resolve a class name or value to a label value, with a clear error."""
        labels = self.labels
        if isinstance(target, str) and not target.lstrip("-").isdigit():
            if target not in labels:
                raise ShapSegError(f"unknown target '{target}'; this model's classes are: "
                                   f"{', '.join(k for k in labels if labels[k] != 0)}", "unknown_target")
            value = labels[target]
        else:
            value = int(target)
            if value not in labels.values():
                raise ShapSegError(f"unknown target label {value}; this model's labels are "
                                   f"{sorted(labels.values())}", "unknown_target")
        if value == 0:
            raise ShapSegError("the target cannot be the background class", "unknown_target")
        return value

    def label_name(self, value: int) -> str:
        return next((k for k, v in self.labels.items() if v == value), str(value))

    # ----- running tiles ---------------------------------------------------------------------
    def gaussian(self) -> torch.Tensor:
        """nnU-Net's Gaussian importance map for this patch size (fp16, on the device)."""
        if self._gaussian is None:
            from nnunetv2.inference.sliding_window_prediction import compute_gaussian
            self._gaussian = compute_gaussian(self.patch_size, sigma_scale=1. / 8, value_scaling_factor=10,
                                              device=self.device)
        return self._gaussian

    def autocast(self):
        """nnU-Net's autocast behaviour: on for CUDA, off elsewhere."""
        if self.device.type == "cuda":
            return torch.autocast(self.device.type, enabled=True)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def forward_weighted(self, tiles: torch.Tensor) -> torch.Tensor:
        """Gaussian-weighted TTA outputs of a batch of tiles for every fold: (F, n, C, *patch).

        With a batch of one this is bit for bit what ``nnUNetPredictor`` computes for a
        tile (same calls, same dtypes: ``prediction *= gaussian``)."""
        x = tiles.to(self.device)
        gaussian = self.gaussian()
        outs, base = [], self.predictor.network
        try:
            with self.autocast():
                for net in self.networks:
                    self.predictor.network = net
                    pred = self.predictor._internal_maybe_mirror_and_predict(x)
                    pred *= gaussian
                    outs.append(pred)
        finally:
            self.predictor.network = base
        return torch.stack(outs)


def load_model(model_dir: str | Path, **kwargs) -> NNUNetModel:
    """Load a results folder; keyword arguments are the fields of ``ModelSettings``."""
    return NNUNetModel(ModelSettings(model_dir=str(model_dir), **kwargs))


def load_model_for(source) -> NNUNetModel:
    """The model a job (or parsed ``shapseg`` options) names, loaded as it says."""
    return NNUNetModel(ModelSettings.of(source))


def find_trainer_class(name: str):
    """nnU-Net's own trainer lookup, or None. 2.7+ has ``find_objects`` (it also searches
    $nnUNet_extTrainer, and raises where 2.6 returned None); 2.6, what pip picks beside the
    torch 2.9 that Slicer's PyTorch extension installs (nnunetv2 2.8 excludes torch 2.9), looks in
    ``nnunetv2.training.nnUNetTrainer`` as its ``predict_from_raw_data`` does
    (``benchmarks/slicer_env``)."""
    try:
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    except ModuleNotFoundError:
        import nnunetv2
        from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
        return recursive_find_python_class(str(Path(nnunetv2.__path__[0]) / "training" / "nnUNetTrainer"), name,
                                           "nnunetv2.training.nnUNetTrainer")
    try:
        return recursive_find_trainer_class_by_name(name)
    except RuntimeError:
        return None
