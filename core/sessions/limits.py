"""The limits the session store enforces in Redis, and how its scripts report a refused turn.

Every limit is passed to the Lua scripts as arguments and enforced there, atomically; nothing
here reads Redis. docs/data-model.md says how each one is kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.conversation import NewAttachment, Role
from core.errors import (
    AttachmentsTooLarge,
    DailyBudgetExhausted,
    EmptyMessage,
    MessageTooLong,
    QuotaExceeded,
    RateLimited,
    SystemPromptTooLong,
)
from core.sessions.codec import kind_code
from core.settings import SessionLimitPolicy, Settings

# What an image is estimated to cost the model, for DAILY_TOKEN_BUDGET's reservation: about
# what providers charge for an image of IMAGE_MAX_SIDE (1568 px) on its long side.
IMAGE_TOKEN_ESTIMATE = 1600
# A session's own system prompt (/persona): as long as a message may be, which is room for a
# detailed role without crowding out the conversation.
MAX_SYSTEM_PROMPT_LENGTH = 4000


@dataclass(frozen=True, slots=True)
class SessionLimits:
    ttl_seconds: int = 3600
    max_sessions_per_user: int = 5
    max_messages_per_session: int = 100
    max_message_length: int = 4000
    # A session's own system prompt (/persona, systemPrompt over HTTP), in characters.
    max_system_prompt_length: int = MAX_SYSTEM_PROMPT_LENGTH
    max_assistant_message_length: int = 32_000  # of a message added through the HTTP API
    policy: SessionLimitPolicy = SessionLimitPolicy.REJECT
    rate_limit_messages: int = 20  # turns per user per window; 0: no rate limit
    rate_limit_window_seconds: int = 60
    daily_token_budget: int = 0  # prompt + completion tokens per user per UTC day; 0: none
    # Bytes of files a session keeps; past it its oldest files are dropped.
    max_attachment_bytes_per_session: int = 8 * 1024 * 1024
    image_context_turns: int = 4  # the images of this many last user messages reach the model

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionLimits:
        return cls(
            ttl_seconds=settings.session_ttl,
            max_sessions_per_user=settings.max_sessions_per_user,
            max_messages_per_session=settings.max_messages_per_session,
            max_message_length=settings.max_message_length,
            max_assistant_message_length=settings.max_assistant_message_length,
            policy=settings.session_limit_policy,
            rate_limit_messages=settings.rate_limit_messages,
            rate_limit_window_seconds=settings.rate_limit_window,
            daily_token_budget=settings.daily_token_budget or 0,
            max_attachment_bytes_per_session=settings.max_attachment_bytes_per_session,
            image_context_turns=settings.image_context_turns,
        )

    def file_args(self, attachments: Sequence[NewAttachment]) -> list[str | int | bytes]:
        """begin_turn.lua's arguments for a message's files (AttachmentsTooLarge when they
        alone exceed MAX_ATTACHMENT_BYTES_PER_SESSION: nothing older could make room)."""
        total = sum(len(file.data) for file in attachments)
        if total > self.max_attachment_bytes_per_session:
            raise AttachmentsTooLarge(size=total, limit=self.max_attachment_bytes_per_session)
        args: list[str | int | bytes] = [
            self.max_attachment_bytes_per_session, self.image_context_turns,
            IMAGE_TOKEN_ESTIMATE, len(attachments),
        ]  # fmt: skip
        for file in attachments:
            code = kind_code(file.kind, is_read_by_model=file.is_read_by_model)
            args += [code, file.media_type, file.name, file.data]
        return args

    def check_content(self, content: str) -> None:
        """Refuse empty user content, or content over MAX_MESSAGE_LENGTH characters."""
        _check(content, self.max_message_length)

    def check_system_prompt(self, prompt: str) -> None:
        """Refuse an empty system prompt, or one over MAX_SYSTEM_PROMPT_LENGTH characters."""
        if not prompt.strip():
            raise EmptyMessage()
        if len(prompt) > self.max_system_prompt_length:
            raise SystemPromptTooLong(length=len(prompt), limit=self.max_system_prompt_length)

    def check_added(self, role: Role, content: str) -> None:
        """Refuse a message added through the HTTP API that is empty or over its role's limit:
        MAX_ASSISTANT_MESSAGE_LENGTH for an assistant's (imported answers run longer than
        questions), MAX_MESSAGE_LENGTH for a user's or a system note."""
        limit = self.max_message_length
        if role is Role.ASSISTANT:
            limit = self.max_assistant_message_length
        _check(content, limit)

    def turn_limit_args(self) -> tuple[int, int, int]:
        """What the scripts take to enforce the per-user turn limits: (limit, window ms, budget)."""
        return (
            self.rate_limit_messages,
            self.rate_limit_window_seconds * 1000,
            self.daily_token_budget,
        )

    def refusal(self, reply: list[Any]) -> QuotaExceeded | None:
        """The error for a script's RATE_LIMITED or BUDGET_EXHAUSTED reply, else None."""
        if reply[0] not in ("RATE_LIMITED", "BUDGET_EXHAUSTED"):
            return None
        # Whole seconds, rounded up: waiting that long is always enough.
        retry_after = max(1, math.ceil(int(reply[1]) / 1000))
        if reply[0] == "RATE_LIMITED":
            return RateLimited(
                retry_after=retry_after,
                limit=self.rate_limit_messages,
                window_seconds=self.rate_limit_window_seconds,
            )
        return DailyBudgetExhausted(retry_after=retry_after, budget=self.daily_token_budget)


def _check(content: str, limit: int) -> None:
    if not content.strip():
        raise EmptyMessage()
    if len(content) > limit:
        raise MessageTooLong(length=len(content), limit=limit)
