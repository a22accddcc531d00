"""A least-recently-used memo of tile results, bounded by bytes.

Hand-written: ``functools.lru_cache`` bounds entries, not bytes, and cannot be asked
for its size; the memo needs a byte budget and a peak-bytes counter.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Hashable

import torch


class ByteLRU:
    """Maps keys to tensors; evicts the least recently used when over ``budget`` bytes."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = int(budget_bytes)
        self._data: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.peak_bytes = 0
        self.evictions = 0
        self.added: list[Hashable] | None = None   # a list: keys put since the last ``drain_added`` (a journal)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    def get(self, key: Hashable) -> torch.Tensor | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: Hashable, value: torch.Tensor) -> None:
        size = value.element_size() * value.nelement()
        if size > self.budget:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old.element_size() * old.nelement()
        self._data[key] = value
        if self.added is not None:
            self.added.append(key)
        self.bytes += size
        while self.bytes > self.budget:
            _, dropped = self._data.popitem(last=False)
            self.bytes -= dropped.element_size() * dropped.nelement()
            self.evictions += 1
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def drain_added(self) -> list[tuple[Hashable, torch.Tensor]]:
        """The entries put since the last call (or since ``added`` was set to a list) and still held,
        oldest first."""
        out = [(k, self._data[k]) for k in dict.fromkeys(self.added or ()) if k in self._data]
        self.added = []
        return out
