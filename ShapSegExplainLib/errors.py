"""The one exception type the engine raises for bad input, with a machine-readable code."""
from __future__ import annotations


class ShapSegError(Exception):
    """A user-facing error: a one-line human message plus a stable machine code."""

    def __init__(self, message: str, code: str = "bad_input") -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message
