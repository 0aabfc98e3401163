"""Starting a chat front: the wait between attempts, and what ends or continues the retrying.

The loop sleeps through a recording fake, so no test waits on the wall clock.
"""

from __future__ import annotations

from itertools import islice

import pytest
from structlog.testing import capture_logs

from bots.chatfront.startup import (
    START_RETRY_FIRST_SECONDS,
    START_RETRY_MAX_SECONDS,
    StartFailures,
    retry_delays,
    start_when_reachable,
)


class TokenRefused(Exception):
    pass


class Unreachable(Exception):
    pass


FAILURES = StartFailures(
    platform="telegram",
    refusal_hint="check TELEGRAM_BOT_TOKEN",
    token_refused=(TokenRefused,),
    unreachable=(Unreachable,),
)


class Attempts:
    """Raises the given errors one per call, then starts."""

    def __init__(self, *errors: Exception) -> None:
        self._errors = list(errors)
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self._errors:
            raise self._errors.pop(0)


class Sleeps:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def first(count: int, first: float, most: float) -> list[float]:
    return list(islice(retry_delays(first, most), count))


def test_the_waits_double_from_one_second_and_stay_at_sixty():
    assert START_RETRY_FIRST_SECONDS == 1.0
    assert START_RETRY_MAX_SECONDS == 60.0
    assert list(islice(retry_delays(), 9)) == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_a_doubling_that_lands_exactly_on_the_cap_is_kept_and_one_past_it_is_cut():
    assert first(4, first=15, most=60) == [15, 30, 60, 60]
    assert first(4, first=16, most=60) == [16, 32, 60, 60]
    assert first(4, first=14, most=60) == [14, 28, 56, 60]


def test_a_first_wait_at_or_above_the_cap_never_grows():
    assert first(3, first=60, most=60) == [60, 60, 60]
    assert first(3, first=90, most=60) == [90, 60, 60]


async def test_an_unreachable_platform_is_retried_with_growing_waits_until_it_starts():
    attempt, sleeps = Attempts(Unreachable("down"), Unreachable("down"), Unreachable()), Sleeps()
    closed_before_wait: list[int] = []

    async def close() -> None:
        closed_before_wait.append(len(sleeps.seconds))

    with capture_logs() as logs:
        await start_when_reachable(attempt, FAILURES, after_unreachable=close, sleep=sleeps)

    assert attempt.calls == 4
    assert sleeps.seconds == [1, 2, 4]
    assert closed_before_wait == [0, 1, 2]
    assert [(e["event"], e["log_level"], e["retry_in"]) for e in logs] == [
        ("telegram.unreachable", "warning", 1.0),
        ("telegram.unreachable", "warning", 2.0),
        ("telegram.unreachable", "warning", 4.0),
    ]
    # An error without a message is named by its type.
    assert [e["reason"] for e in logs] == ["down", "down", "Unreachable()"]


async def test_a_refused_token_ends_the_start_at_once_with_a_hint_and_no_wait():
    attempt, sleeps = Attempts(TokenRefused("401"), Unreachable()), Sleeps()

    with capture_logs() as logs:
        await start_when_reachable(attempt, FAILURES, sleep=sleeps)

    assert attempt.calls == 1
    assert sleeps.seconds == []
    (refused,) = logs
    assert refused == {
        "event": "telegram.token_refused",
        "hint": "check TELEGRAM_BOT_TOKEN",
        "log_level": "error",
    }


async def test_a_refused_token_after_network_trouble_still_ends_it():
    attempt, sleeps = Attempts(Unreachable("down"), TokenRefused("401")), Sleeps()

    await start_when_reachable(attempt, FAILURES, sleep=sleeps)

    assert attempt.calls == 2
    assert sleeps.seconds == [1]


async def test_an_error_that_is_neither_refusal_nor_network_trouble_is_not_retried():
    attempt, sleeps = Attempts(ValueError("a bug")), Sleeps()

    with pytest.raises(ValueError, match="a bug"):
        await start_when_reachable(attempt, FAILURES, sleep=sleeps)

    assert sleeps.seconds == []


async def test_a_front_stopping_during_a_wait_makes_no_further_attempt():
    attempt, stopping = Attempts(Unreachable("down"), Unreachable("down")), False

    async def stop_while_waiting(seconds: float) -> None:
        nonlocal stopping
        stopping = True

    await start_when_reachable(
        attempt, FAILURES, is_stopping=lambda: stopping, sleep=stop_while_waiting
    )

    assert attempt.calls == 1


async def test_a_front_stopped_before_it_starts_makes_no_attempt():
    attempt = Attempts()

    await start_when_reachable(attempt, FAILURES, is_stopping=lambda: True, sleep=Sleeps())

    assert attempt.calls == 0
