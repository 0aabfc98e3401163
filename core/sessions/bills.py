"""A shared space's turns, billed to the person who wrote them in the person's own slot.

A turn checks and spends its writer's rate limit and daily budget in begin_turn.lua when the
writer's keys share the session's slot: in their own space and in their space of a group chat
(core/spaces.py). A shared space's sessions live in the chat's slot, so its turn bills the
writer in theirs with two more round trips: reserve_turn.lua before begin_turn, and
settle_turn.lua when it ends (or gives the turn back when it never began). Both are keyed by
the turn's lock token, so a repeated call bills once.
"""

from __future__ import annotations

from core.conversation import Usage
from core.sessions.codec import usage_args
from core.sessions.keys import user_tag, user_turns_key
from core.sessions.limits import SessionLimits
from core.sessions.scripts import LuaScripts

# How long a bill's record outlives its reservation: longer than any turn (TURN_TIMEOUT is at
# most an hour, plus the wait for a busy session), so that its settling finds it.
BILL_RECORD_MS = 2 * 3_600_000


class PersonBills:
    def __init__(self, scripts: LuaScripts, limits: SessionLimits) -> None:
        self._run = scripts.run
        self._limits = limits

    async def reserve(self, person: str, lock_token: str, tokens: int) -> None:
        """Count the turn against `person`'s rate limit and reserve `tokens` of their budget;
        RateLimited or DailyBudgetExhausted when they may not start a turn now."""
        reply = await self._run(
            "reserve_turn", user_turns_key(person), user_tag(person), person, lock_token,
            *self._limits.turn_limit_args(), tokens, BILL_RECORD_MS,
        )  # fmt: skip
        if refusal := self._limits.refusal(reply):
            raise refusal

    async def settle(
        self, person: str, lock_token: str, spent_tokens: int, *, usage: Usage | None = None
    ) -> None:
        """The turn ended: it cost `person` `spent_tokens` instead of its reservation, and
        the `usage` the model reported goes to their /usage."""
        await self._run(
            "settle_turn", user_turns_key(person), user_tag(person), person, lock_token,
            spent_tokens, "0", *usage_args(usage),
        )  # fmt: skip

    async def give_back(self, person: str, lock_token: str) -> None:
        """The turn never began: it counts neither as a turn nor as tokens."""
        await self._run(
            "settle_turn", user_turns_key(person), user_tag(person), person, lock_token, 0, "1"
        )
