"""Slicer-side helpers of the ShapSegExplain module that are not modules themselves.

Slicer instantiates every top-level ``.py`` of a scripted-module folder as a module
(``qSlicerScriptedLoadableModuleFactory.cxx`` at v5.10.0), so anything else lives here, in a
subfolder Slicer does not scan (``Testing/slicer/test_slicer_startup.py`` holds it to that)."""
