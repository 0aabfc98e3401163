"""Starting a chat front once its platform answers: one retry loop for every front.

A refused token ends the start with `<platform>.token_refused` (an error without a traceback:
a setting must change, retrying cannot help). Network trouble is `<platform>.unreachable` with
`reason` and `retry_in`, and is retried after 1 s, 2 s, 4 s… doubling to at most 60 s apart, so
a front whose platform is down for an hour comes back within a minute of it, without hammering.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

START_RETRY_FIRST_SECONDS = 1.0
START_RETRY_MAX_SECONDS = 60.0


def retry_delays(
    first: float = START_RETRY_FIRST_SECONDS, most: float = START_RETRY_MAX_SECONDS
) -> Iterator[float]:
    """Endless waits between attempts: `first`, then doubling, never above `most`."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, most)


@dataclass(frozen=True)
class StartFailures:
    """How one platform's client says why it did not start."""

    platform: str  # names the log events: "telegram" logs `telegram.unreachable`
    refusal_hint: str  # what `token_refused` tells the operator: the setting to check
    token_refused: tuple[type[BaseException], ...]
    unreachable: tuple[type[BaseException], ...]


async def _nothing() -> None:
    return None


def _never() -> bool:
    return False


async def start_when_reachable(
    attempt: Callable[[], Awaitable[None]],
    failures: StartFailures,
    *,
    after_unreachable: Callable[[], Awaitable[None]] = _nothing,
    is_stopping: Callable[[], bool] = _never,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run `attempt` until it returns, retrying while the platform cannot be reached.

    `after_unreachable` runs before each wait (a client to close); `is_stopping` ends the
    retrying when the service stops during a wait.
    """
    delays = retry_delays()
    while not is_stopping():
        try:
            await attempt()
        except failures.token_refused:
            log.error(f"{failures.platform}.token_refused", hint=failures.refusal_hint)  # noqa: TRY400  (expected: no traceback)
            return
        except failures.unreachable as error:
            delay = next(delays)
            reason = str(error) or repr(error)  # some network errors have no message
            log.warning(f"{failures.platform}.unreachable", reason=reason, retry_in=delay)
            await after_unreachable()
            await sleep(delay)
        else:
            return
