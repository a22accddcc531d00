"""Showing a run's events: a progress bar on a terminal, one quiet line per phase otherwise."""
from __future__ import annotations

import sys
import time


class TerminalProgress:
    """A tqdm bar over coalitions: phase, coalitions done, tile forwards, convergence ratio, ETA."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.bar = None

    def __call__(self, event: dict) -> None:
        if event.get("event") != "progress":
            return
        phase = event["phase"]
        if phase in ("shapley", "faithfulness"):
            self._bar(event)
        else:
            self.close()
            print(f"  {phase}: {event['message']}", file=self.stream, flush=True)

    def _bar(self, event: dict) -> None:
        from tqdm import tqdm
        if self.bar is None:
            self.bar = tqdm(total=event["total"], unit="coalition", file=self.stream, dynamic_ncols=True,
                            bar_format="  {desc} {bar} {n_fmt}/{total_fmt} coalitions [{elapsed}<{remaining}] "
                                       "{postfix}")
        self.bar.set_description_str(event["phase"])
        post = {}
        if "tile_forwards" in event:
            post["tile forwards"] = event["tile_forwards"]
        if "ratio" in event:
            post["ratio"] = f"{event['ratio']:.3f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(max(0, event["done"] - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LogProgress:
    """Quiet: one line per phase change on stderr, with the time since the start."""

    def __init__(self, stream=None) -> None:
        self.stream, self.t0, self.last = stream or sys.stderr, time.perf_counter(), None

    def __call__(self, event: dict) -> None:
        if event.get("event") == "progress" and event["phase"] != self.last:
            self.last = event["phase"]
            print(f"[{time.perf_counter() - self.t0:6.1f} s] {event['phase']}: {event['message']}",
                  file=self.stream, flush=True)

    def close(self) -> None:
        pass


def progress_for(stream=None):
    stream = stream or sys.stderr
    return TerminalProgress(stream) if getattr(stream, "isatty", lambda: False)() else LogProgress(stream)
