"""Shapley values of a game (exact, KernelSHAP designs, the GP posterior), the value functions on fused ROI logits, and faithfulness metrics."""
