"""Waiting in tests for what must happen soon, failing with what was awaited if it does not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest


async def until(condition: Callable[[], object], *, what: str, within: float = 10.0) -> None:
    """Poll `condition` until it is truthy; fail naming `what` after `within` seconds.

    Only for what must happen: a wait that ends is never proof that something did not."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not seen within {within:g} s: {what}")
        await asyncio.sleep(0.01)
