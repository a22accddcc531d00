"""ShapSegExplain engine: Shapley explanations of nnU-Net CT segmentations (no Slicer imports).

``explain`` and ``Explanation`` (the Python API, ``api.py``) load on first use (PEP 562), so
importing the package for ``__version__`` or the torch-free panel stays light.

``__version__`` is the one version source: pyproject.toml reads it (``dynamic``), and
``explanation.json`` reports it, also inside Slicer where the package has no metadata."""
__version__ = "0.8.0"
__all__ = ["explain", "Explanation", "ShapSegError", "__version__"]


def __getattr__(name: str):
    if name in ("explain", "Explanation"):
        from . import api
        return getattr(api, name)
    if name == "ShapSegError":
        from .errors import ShapSegError
        return ShapSegError
    raise AttributeError(f"module 'ShapSegExplainLib' has no attribute {name!r}")
