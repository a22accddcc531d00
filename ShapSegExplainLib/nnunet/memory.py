"""The tile batch size chosen from memory (``--batch-size 0``, the default).

On CUDA one probe forward of two tiles measures what a tile costs (the allocator's peak),
and the batch is the largest power of two up to ``GPU_CAP`` whose tiles fit in
``GPU_SHARE`` of the free memory. On a CPU a batch beyond two does not pay (measured on the
trained ``abdo7-small`` with ``benchmarks/bench_gpu_throughput.py``, tiles/s at batch
1 / 2 / 4 / 8: 2.28 / 3.81 / 3.75 / 3.16 on one machine of the 2-core kind, 4.65 / 7.69 /
6.27 / 5.80 on another; a tile's output is bitwise the same at any batch of two or more),
so the batch is ``CPU_CAP`` unless fewer tiles fit in the half of the memory limit that the
tile memo leaves (``--max-memory``, by default half the available memory), by an estimate of
a tile's activations (the CPU allocator keeps no peak to read). The memo gets the other half.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

import torch

GPU_CAP, GPU_SHARE = 16, 0.7
CPU_CAP = 2
DEFAULT_LIMIT_SHARE = 0.5   # without --max-memory: half the host memory available at the start
MEMO_SHARE = 0.5            # of the limit: the tile memo; the rest: a CPU batch's activations


@dataclass(frozen=True)
class MemoryLimit:
    """The host memory a run's tile memo and CPU batch stay within, and where it came from."""
    bytes: int
    source: str

    @property
    def memo_bytes(self) -> int:
        return int(MEMO_SHARE * self.bytes)

    def as_dict(self) -> dict:
        return {"limit_mib": round(self.bytes / 2 ** 20, 1), "memo_mib": round(self.memo_bytes / 2 ** 20, 1),
                "from": self.source}


def memory_limit(max_memory_gb: float | None) -> MemoryLimit:
    """``--max-memory`` (GiB), or by default half the memory available now."""
    if max_memory_gb:
        return MemoryLimit(int(max_memory_gb * 2 ** 30), "--max-memory")
    return MemoryLimit(int(DEFAULT_LIMIT_SHARE * available_cpu_bytes()), "half the available memory")


@dataclass(frozen=True)
class BatchChoice:
    """The batch size and why: the bytes a tile needs and the bytes it was fitted into."""
    size: int
    tile_bytes: int
    free_bytes: int
    how: str

    def as_dict(self) -> dict:
        return {"batch_size": self.size, "tile_mib": round(self.tile_bytes / 2 ** 20, 1),
                "free_mib": round(self.free_bytes / 2 ** 20, 1), "how": self.how}


FLOOR = 2      # a batch of one runs other kernels (nnU-Net's own batch-of-one outputs): another game


def fit(tile_bytes: int, free_bytes: int, share: float, cap: int) -> int:
    """The largest power of two ≤ ``cap`` whose tiles fit in ``share`` of ``free_bytes``, and
    never below ``FLOOR``: free memory must not decide a run's numbers (a resumed run, or a
    run on a busier machine, would play another game; ``--batch-size 1`` is the user's)."""
    n = FLOOR
    while n * 2 <= cap and n * 2 * tile_bytes <= share * free_bytes:
        n *= 2
    return n


def estimated_tile_bytes(arch: dict, patch: tuple[int, ...], n_classes: int) -> int:
    """fp32 activations of one tile under ``no_grad``: every stage's skip tensor kept for the
    decoder, the decoder's mirror of them, three tensors of the largest stage at work, and
    the output (an estimate from the plans' ``features_per_stage`` and ``strides``)."""
    sizes, shape = [], list(patch)
    for feats, stride in zip(arch["features_per_stage"], arch["strides"]):
        stride = [stride] * len(shape) if isinstance(stride, int) else list(stride)
        shape = [max(1, s // k) for s, k in zip(shape, stride)]
        sizes.append(int(feats) * prod(shape))
    return 4 * (2 * sum(sizes) + 3 * max(sizes) + n_classes * prod(patch))


def available_cpu_bytes() -> int:
    import psutil
    return int(psutil.virtual_memory().available)


def choose_batch_size(model) -> BatchChoice:
    """The batch for ``model`` (an ``NNUNetModel``) on its device."""
    if model.device.type == "cuda":
        return _probe_cuda(model)
    cm = model.configuration_manager
    tile = estimated_tile_bytes(cm.network_arch_init_kwargs, tuple(cm.patch_size), model.num_outputs)
    limit = memory_limit(model.settings.max_memory_gb).bytes
    return BatchChoice(fit(tile, limit, 1 - MEMO_SHARE, CPU_CAP), tile, limit, "cpu estimate")


def _probe_cuda(model) -> BatchChoice:
    """One forward of two tiles measures a tile's share of the allocator's peak."""
    device = model.device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    probe = torch.zeros((2, model.num_inputs, *model.patch_size), device=device)
    model.forward_weighted(probe)
    torch.cuda.synchronize(device)
    tile = max(1, (torch.cuda.max_memory_allocated(device) - start) // 2)
    del probe
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    return BatchChoice(fit(tile, free, GPU_SHARE, GPU_CAP), int(tile), int(free), "cuda probe")


def _libc_trim():
    """glibc's ``malloc_trim``, or None (another C library, another system)."""
    import ctypes
    import ctypes.util
    import sys
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _libc_trim()


def release_freed_memory() -> None:
    """Hand the heap pages freed by the last batch back to the system (glibc ``malloc_trim``).

    CPU forwards free their activations, but glibc keeps the freed pages: measured on the demo
    model, the resident size grew by about 1 MB per tile forward and an enumeration of 16 384
    forwards was killed at 24 GB, with 4 MB in the memo and every tensor freed; after a trim
    it stayed at 1.05 GB. No library call does this for PyTorch on the CPU, hence by hand."""
    if _TRIM is not None:
        _TRIM(0)
