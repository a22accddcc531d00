"""The panel's run controls: Explain / Cancel, the worker's events in the progress bar and the
log, and what a failed run offers (resume from its journal, trust an unusual checkpoint). A
mixin of the module's Widget (it holds ``ui``, ``logic`` and the parameter node)."""
from __future__ import annotations

import logging

import slicer
from slicer.i18n import tr as _

from ShapSegExplainLib.errors import ShapSegError
from ShapSegExplainLib.panel import dependencies, result_view
from ShapSegExplainLib.panel.worker_events import RunState


class WidgetRunMixin:
    def onApplyButton(self) -> None:
        if self.logic.running:
            seconds = self.logic.cancel()
            self.ui.statusLabel.text = _("Cancelled in {s:.2f} s; nothing was written.").format(s=seconds)
            self.updateApplyButton()
            return
        if dependencies.missing():
            self.onInstallButton()
            if dependencies.missing():
                return
        self.ui.logTextEdit.clear()
        self.ui.progressBar.value = 0
        try:
            self.logic.start(self._parameterNode)
        except ShapSegError as e:
            slicer.util.errorDisplay(str(e), windowTitle=_("ShapSeg Explain"))
            return
        except Exception as e:   # an export that Slicer refused: show it, never a half-started run
            logging.exception("ShapSegExplain could not start")
            slicer.util.errorDisplay(_("Could not start the explanation: {e}").format(e=e),
                                     windowTitle=_("ShapSeg Explain"))
            return
        self.ui.statusLabel.text = _("Starting the worker...")
        self.updateApplyButton()

    def onWorkerEvent(self, event: dict, state: RunState) -> None:
        kind = event.get("event")
        if kind == "log":
            self.ui.logTextEdit.appendPlainText(event.get("message", ""))
            return
        if kind == "progress":
            self.ui.logTextEdit.appendPlainText(f"[{event.get('phase')}] {event.get('message', '')}")
        self.ui.progressBar.value = state.percent
        self.ui.progressBar.format = f"{state.phase} %p%"
        self.ui.statusLabel.text = result_view.status_text(state)

    def onWorkerFinished(self, state: RunState, resultNode) -> None:
        self.ui.statusLabel.text = result_view.status_text(state)
        self.updateApplyButton()
        if state.outcome == "result" and resultNode is not None:
            self.ui.progressBar.value = 100
            self._parameterNode.resultSegmentation = resultNode
        elif state.outcome == "error" and state.error_code == "unsafe_checkpoint":
            self.askToTrustCheckpoint(state.message)
        elif state.outcome == "error" and self.logic.savedCoalitions() and self.resumeIfWanted(state.message):
            return
        elif state.outcome == "error":
            self.ui.logCollapsibleButton.collapsed = False
            slicer.util.errorDisplay(state.message, windowTitle=_("ShapSeg Explain: the explanation failed"),
                                     detailedText="\n".join(state.log[-200:]))

    def resumeIfWanted(self, message: str) -> bool:
        """The worker died (killed, out of memory): offer to go on from what it saved."""
        if not slicer.util.confirmYesNoDisplay(
                _("{m}\n\nThe {n} coalitions it had evaluated are saved. Go on from there? The result is the same "
                  "as if it had not stopped.").format(m=message, n=self.logic.savedCoalitions()),
                windowTitle=_("ShapSeg Explain: the explanation stopped")):
            return False
        self.logic.resume()
        self.ui.statusLabel.text = _("Resuming the worker...")
        self.updateApplyButton()
        return True

    def askToTrustCheckpoint(self, message: str) -> None:
        """A checkpoint holding more than nnU-Net's own types: ask once for this folder, saying
        why; yes loads it fully (and runs again), no leaves it refused."""
        folder = str(self._parameterNode.modelPath)
        if slicer.util.confirmYesNoDisplay(
                _("{m}\n\nLoading it unpickles arbitrary Python objects, which can run code on this computer. "
                  "Load this model anyway? Only if you trust where it comes from.").format(m=message),
                windowTitle=_("ShapSeg Explain: an unusual model checkpoint")):
            self.logic.trustedModelFolders.add(folder)
            self.onApplyButton()
