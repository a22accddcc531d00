"""The state of one run: its job, where its events go, its cancel check and the seconds of
each phase; ``Cancelled`` is how a cancel unwinds it."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from .job import ExplainJob

Emit = Callable[[dict], None]


class Cancelled(BaseException):
    """Raised when a run is asked to stop (SIGTERM in the worker, a cancel flag here);
    a BaseException so that no library's ``except Exception`` swallows it."""


@dataclass
class Run:
    """What a run has built so far (for the outputs and for tests)."""
    job: ExplainJob
    emit: Emit
    cancel: Callable[[], bool]
    t0: float = field(default_factory=time.perf_counter)
    phase_seconds: dict = field(default_factory=dict)
    _phase: str | None = None
    _phase_t0: float = 0.0

    def phase(self, name: str, message: str, done: int = 0, total: int = 1, **extra) -> None:
        self.check()
        now = time.perf_counter()
        if self._phase is not None:
            self.phase_seconds[self._phase] = round(self.phase_seconds.get(self._phase, 0.0) + now - self._phase_t0, 3)
        self._phase, self._phase_t0 = name, now
        self.emit({"event": "progress", "phase": name, "done": done, "total": total, "message": message, **extra})

    def check(self) -> None:
        if self.cancel():
            raise Cancelled()
