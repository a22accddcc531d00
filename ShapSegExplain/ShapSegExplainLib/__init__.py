"""ShapSegExplain engine: Shapley explanations of nnU-Net CT segmentations (no Slicer imports)."""
__version__ = "0.6.0"
