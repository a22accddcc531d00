"""ShapSegExplain engine: Shapley explanations of nnU-Net CT segmentations (no Slicer imports).

``__version__`` is the one version source: pyproject.toml reads it (``dynamic``), and
``explanation.json`` reports it, also inside Slicer where the package has no metadata."""
__version__ = "0.8.0"
