"""Reading the worker's stdout (JSON lines) as it arrives, for the Slicer module.

``EventReader.feed(text)`` takes whatever chunk a ``QProcess`` read returned (possibly a
partial line) and returns the complete events; a line that is not a JSON event becomes a
``log`` event, so nothing is lost and nothing crashes the GUI. ``RunState`` folds the
events into what the panel shows: phase, percentage, ETA, the latest φ, and the outcome.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

FINAL = ("result", "error", "cancelled")


class EventReader:
    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, text: str) -> list[dict]:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        return [parse_line(line) for line in lines if line.strip()]

    def flush(self) -> list[dict]:
        """What is left when the process has ended (a last line without a newline)."""
        rest, self._buffer = self._buffer, ""
        return [parse_line(rest)] if rest.strip() else []


def parse_line(line: str) -> dict:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return {"event": "log", "message": line.rstrip()}
    if not isinstance(event, dict) or "event" not in event:
        return {"event": "log", "message": line.rstrip()}
    return event


@dataclass
class RunState:
    """What the panel shows about a running or finished worker."""
    phase: str = "starting"
    done: int = 0
    total: int = 0
    message: str = ""
    players: list[dict] = field(default_factory=list)
    phi: list[float] | None = None
    se: list[float] | None = None
    ratio: float | None = None
    outcome: str | None = None          # result / error / cancelled
    error_code: str | None = None
    result: dict | None = None
    log: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    _sampling_t0: float | None = None
    _sampling_done0: int = 0

    def update(self, event: dict, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        kind = event.get("event")
        if kind == "progress":
            if event.get("phase") != self.phase and event.get("phase") in ("shapley", "faithfulness") \
                    and self._sampling_t0 is None:
                self._sampling_t0, self._sampling_done0 = now, int(event.get("done", 0))
            self.phase, self.message = event.get("phase", self.phase), event.get("message", "")
            self.done, self.total = int(event.get("done", 0)), int(event.get("total", 0))
            self.ratio = event.get("ratio", self.ratio)
        elif kind == "players":
            self.players = event.get("players", [])
        elif kind == "partial":
            self.phi, self.se, self.ratio = event.get("phi"), event.get("se"), event.get("ratio")
        elif kind in FINAL:
            self.outcome = kind
            self.message = event.get("message", "")
            self.error_code = event.get("code")
            if kind == "result":
                self.result, self.phase, self.done = event, "done", self.total
        elif kind == "log":
            self.log.append(event.get("message", ""))
        self._now = now

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Seconds left from the coalition rate since sampling began (None before it is known)."""
        now = getattr(self, "_now", None) if now is None else now
        if self._sampling_t0 is None or now is None or self.done <= self._sampling_done0 or not self.total:
            return None
        rate = (self.done - self._sampling_done0) / max(now - self._sampling_t0, 1e-9)
        return max(0.0, (self.total - self.done) / rate)

    @property
    def finished(self) -> bool:
        return self.outcome is not None
