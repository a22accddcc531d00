"""Installing what the worker needs into Slicer's Python: torch through the PyTorch extension,
the rest with Slicer's pip under a constraints file that pins every installed package (so
Slicer's own numpy, SimpleITK or requests are never replaced). A mixin of the module's Logic."""
from __future__ import annotations

import pathlib

import slicer
from slicer.i18n import tr as _

from ShapSegExplainLib.panel import dependencies


class InstallerMixin:
    def installDependencies(self, askConfirmation: bool = True) -> bool:
        """Torch through the PyTorch extension when it is there (it picks the build for this
        computer's GPU), then the rest with Slicer's pip helper; pinned as in pyproject.toml."""
        missing = dependencies.missing()
        if not missing:
            return True
        torch, rest = dependencies.split_torch(missing)
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                _("ShapSeg Explain needs these Python packages: {p}. Download and install them now? "
                  "This can take several minutes (PyTorch is large).").format(p=", ".join(missing)),
                windowTitle=_("ShapSeg Explain: install Python packages")):
            return False
        if torch:
            try:
                import PyTorchUtils
            except ImportError:
                PyTorchUtils = None
            if PyTorchUtils is not None:
                if PyTorchUtils.PyTorchUtilsLogic().installTorch(
                        askConfirmation=False, torchVersionRequirement=dependencies.version_requirement("torch"),
                        torchvisionVersionRequirement=dependencies.version_requirement("torchvision")) is None:
                    raise RuntimeError(_("PyTorch was not installed."))
            else:
                rest = torch + rest
        if rest:       # only what is missing; every installed package is pinned, so nothing of Slicer's is replaced
            constraints = pathlib.Path(slicer.app.temporaryPath) / "ShapSegExplain-constraints.txt"
            constraints.parent.mkdir(parents=True, exist_ok=True)
            constraints.write_text(dependencies.constraints_text(dependencies.installed_versions()))
            slicer.util.pip_install(dependencies.pip_arguments(rest, str(constraints)))
        return not dependencies.missing()
