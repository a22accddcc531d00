"""The module's Slicer-side parts, split from ShapSegExplain.py by concern: the panel's
parameters, the exports for the worker, the result in the scene, the demo scene and the
self-test. They import ``slicer`` (the engine, ShapSegExplainLib, never does); Slicer puts the
module's folder on ``sys.path`` (R4 of Testing/slicer/slicer_startup.py), so this package is
importable wherever the module is."""
