"""A monotonic clock that moves only when a test tells it to (for cool-downs without sleeping)."""

from __future__ import annotations


class FakeClock:
    """Call it for the time; `advance(seconds)` moves it forward."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
