"""Where a session's summary is kept (core/summaries.py makes it): in its hash, as `summary`
and `summaryUpTo` (the seq of the last message it stands in for), so that it expires and is
deleted with the session. Three scripts, each one round trip, none on a turn's path:
summary_source.lua claims the next summary and reads what it is made from, save_summary.lua
stores it (compare-and-set under the claim), charge_tokens.lua bills the person for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.conversation import Usage
from core.sessions.codec import ContextEntry, context_from, usage_args
from core.sessions.keys import session_key, tag_of_session, user_tag, user_turns_key
from core.sessions.scripts import LuaScripts

# How long a claim on a session's next summary lasts when its holder dies before storing it:
# longer than a summary takes (the model call is bounded by TURN_TIMEOUT's default).
SUMMARY_CLAIM_MS = 330_000


@dataclass(frozen=True, slots=True)
class SummarySource:
    """What a new summary is made from: the summary so far and the messages it is to add."""

    summary: str  # '' = none yet
    covered: int  # the seq the summary so far stands in up to (0 = none)
    messages: tuple[ContextEntry, ...]  # oldest first


class SummaryStore:
    def __init__(self, scripts: LuaScripts) -> None:
        self._run = scripts.run

    async def claim(self, session_id: str, token: str, up_to: int) -> SummarySource | None:
        """Claim the session's next summary, to stand in for its messages up to seq `up_to`;
        None when there is nothing to do: the session is gone, another claim holds it, or a
        summary already stands in for them. Claimed again with the same token, it answers
        again."""
        reply = await self._run(
            "summary_source", session_key(session_id), tag_of_session(session_id), session_id,
            token, SUMMARY_CLAIM_MS, up_to,
        )  # fmt: skip
        if reply[0] != "OK":
            return None
        return SummarySource(str(reply[1]), int(reply[2]), context_from(reply[3]))

    async def save(
        self,
        session_id: str,
        token: str,
        source: SummarySource,
        up_to: int,
        summary: str,
        *,
        tokens: int,
    ) -> bool:
        """Store `summary` (made from `source`, taking `tokens` as a turn sends it) as the
        session's, standing in for its messages up to `up_to`; False when the claim lapsed,
        the summary changed meanwhile or the session is gone."""
        reply = await self._run(
            "save_summary", session_key(session_id), tag_of_session(session_id), session_id,
            token, source.covered, up_to, summary, tokens,
        )  # fmt: skip
        return bool(reply == "OK")

    async def release(self, session_id: str, token: str) -> None:
        """Let the claim go: no summary could be made (a later turn tries again)."""
        await self._run(
            "save_summary", session_key(session_id), tag_of_session(session_id), session_id,
            token, 0, 0, "",
        )  # fmt: skip

    async def charge(self, person: str, call_id: str, tokens: int, usage: Usage | None) -> None:
        """Bill `person` `tokens` of today's budget, and `usage` to their /usage, once per
        `call_id`."""
        await self._run(
            "charge_tokens", user_turns_key(person), user_tag(person), person, call_id, tokens,
            *usage_args(usage),
        )  # fmt: skip
