"""Connected pieces of a key map, their face adjacency, and merging of small pieces.

``skimage.measure.label`` finds the pieces (connected regions of equal key). The merge
rule, "a piece below the minimum size joins the allowed neighbour it shares the most
faces with, smallest pieces first", is hand-written: scikit-image's RAG merging works
on edge weights and thresholds, not on this size-driven rule. It is a union-find over
a few hundred pieces, so plain Python is fast enough.
"""
from __future__ import annotations

import heapq
from collections import Counter, defaultdict

import numpy as np
from skimage.measure import label as sk_label


def connected_pieces(keys: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Face-connected regions of equal key inside ``mask``: ids 1..n, 0 outside the mask."""
    keyed = np.where(mask, np.asarray(keys, np.int64), -1)
    return sk_label(keyed, background=-1, connectivity=1).astype(np.int64)


def shared_faces(pieces: np.ndarray) -> Counter:
    """Number of voxel faces shared by every pair of different pieces (ids > 0), keyed (a, b), a < b."""
    counts: Counter = Counter()
    for ax in range(pieces.ndim):
        a = np.moveaxis(pieces, ax, 0)[:-1].reshape(-1)
        b = np.moveaxis(pieces, ax, 0)[1:].reshape(-1)
        keep = (a != b) & (a > 0) & (b > 0)
        if not keep.any():
            continue
        lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
        pairs, n = np.unique(np.stack([lo, hi]), axis=1, return_counts=True)
        for (x, y), c in zip(pairs.T.tolist(), n.tolist()):
            counts[(x, y)] += c
    return counts


def merge_small(pieces: np.ndarray, min_voxels: int, group: np.ndarray | None = None) -> np.ndarray:
    """Merge every piece smaller than ``min_voxels`` into a neighbour, smallest first.

    The neighbour is the one sharing the most faces (ties: the lower id); with ``group``
    (one value per piece id, index 0 unused) only neighbours of the same group qualify.
    A merged piece stays face-connected. Pieces with no allowed neighbour stay as they are.
    Returns the relabelled map (ids are those of the surviving pieces)."""
    n = int(pieces.max())
    if n == 0 or min_voxels <= 1:
        return pieces
    size = np.bincount(pieces.reshape(-1), minlength=n + 1).astype(np.int64)
    adj: dict[int, Counter] = defaultdict(Counter)
    for (a, b), c in shared_faces(pieces).items():
        adj[a][b] += c
        adj[b][a] += c
    parent = np.arange(n + 1)
    heap = [(int(size[i]), i) for i in range(1, n + 1) if 0 < size[i] < min_voxels]
    heapq.heapify(heap)
    while heap:
        s, i = heapq.heappop(heap)
        if parent[i] != i or s != size[i] or s >= min_voxels:
            continue
        allowed = [(c, -j) for j, c in adj[i].items() if group is None or group[j] == group[i]]
        if not allowed:
            continue
        _, neg = max(allowed)
        j = -neg
        parent[i] = j
        size[j] += size[i]
        size[i] = 0
        for k, c in adj.pop(i).items():
            del adj[k][i]
            if k != j:
                adj[j][k] += c
                adj[k][j] += c
        if size[j] < min_voxels:
            heapq.heappush(heap, (int(size[j]), j))
    return _resolve(parent)[pieces]


def _resolve(parent: np.ndarray) -> np.ndarray:
    """Union-find roots for every id."""
    root = parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            return root
        root = nxt


def piece_stats(labels: np.ndarray, codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ids 0..n-1 of ``labels`` (negative = none): voxel counts (n,), centroids in array
    index coordinates (n, 3), and voxel counts per code of ``codes`` (n, max code + 1)."""
    keep = labels >= 0
    flat = labels[keep].astype(np.int64)
    count = np.bincount(flat, minlength=n)
    idx = np.argwhere(keep).astype(np.float64)
    centroid = np.stack([np.bincount(flat, weights=idx[:, a], minlength=n) for a in range(labels.ndim)], 1)
    centroid /= np.maximum(count, 1)[:, None]
    c = codes[keep].astype(np.int64)
    k = int(c.max()) + 1 if c.size else 1
    joint = np.bincount(flat * k + c, minlength=n * k).reshape(n, k)
    return count, centroid, joint
