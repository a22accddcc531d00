"""Showing a run's events: a progress bar on a terminal, one quiet line per phase otherwise.

While the inputs are read and checked (``INPUT_PHASES``) nothing stays on stderr: a terminal
shows a status line that is erased, a log holds the lines back until the inputs are
accepted. So a bad input leaves exactly one line on stderr, the error (docs/usage.md: Bad input).
"""
from __future__ import annotations

import sys
import time

INPUT_PHASES = ("load", "prepare", "roi", "players")     # every input file is read and checked by their end


class TerminalProgress:
    """A tqdm bar over coalitions: phase, coalitions done, tile forwards, convergence ratio, ETA."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.bar = None
        self.status = False         # an input phase's line is showing, to be erased

    def __call__(self, event: dict) -> None:
        if event.get("event") != "progress":
            return
        phase = event["phase"]
        if phase in ("shapley", "faithfulness"):
            self._erase()
            self._bar(event)
        else:
            self.close()
            line = f"  {phase}: {event['message']}"
            self.status = phase in INPUT_PHASES
            self.stream.write(f"\r{line}\033[K" if self.status else f"{line}\n")
            self.stream.flush()

    def _erase(self) -> None:
        if self.status:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.status = False

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
        self._erase()
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LogProgress:
    """Quiet: one line per phase change on stderr, with the time since the start."""

    def __init__(self, stream=None) -> None:
        self.stream, self.t0, self.last = stream or sys.stderr, time.perf_counter(), None
        self.held: list[str] = []     # the input phases' lines, written once the inputs are accepted

    def __call__(self, event: dict) -> None:
        if event.get("event") == "progress" and event["phase"] != self.last:
            self.last = event["phase"]
            line = f"[{time.perf_counter() - self.t0:6.1f} s] {event['phase']}: {event['message']}"
            self.held.append(line)
            if event["phase"] not in INPUT_PHASES:
                print("\n".join(self.held), file=self.stream, flush=True)
                self.held = []

    def close(self) -> None:
        self.held = []


def progress_for(stream=None):
    stream = stream or sys.stderr
    return TerminalProgress(stream) if getattr(stream, "isatty", lambda: False)() else LogProgress(stream)
