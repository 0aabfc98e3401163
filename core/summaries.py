"""Rolling summaries: what a session's older messages said, for the model once they no longer
fit a turn's context (or are about to be trimmed by MAX_MESSAGES_PER_SESSION).

After a turn's answer is stored and shown (never delaying it), `fold_point` decides from what
the turn sent whether older messages need summarising; `Summarizer` then, in a task of its own:

1. claims the session's next summary and reads the summary so far and the messages to add
   (summary_source.lua: one claim per session, so replicas make one summary, not two);
2. asks SUMMARY_MODEL for the summary so far with those messages folded in;
3. bills the person for it (DAILY_TOKEN_BUDGET and /usage, once per claim);
4. stores it in the session's hash, standing in for the messages up to the fold point
   (save_summary.lua: only if the summary it was made from is still the session's).

Turns from then on send the summary as a system message before the messages after it
(begin_turn.lua leaves the summarised ones out). A failed summary is logged and tried again
after a later turn, which sees the same messages out of its context.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from core.conversation import Role, Usage, estimated_tokens
from core.errors import ChatbridgeError
from core.llm.wire import ChatMessage, CompletionDone, StreamEvent
from core.sessions.codec import ContextEntry
from core.sessions.summary_store import SummarySource, SummaryStore
from core.tokens import count_tokens

log = structlog.get_logger(__name__)

# The most a summary may take: its answer's cap (at most a quarter of CONTEXT_TOKENS, so that
# recent messages keep room beside it), and what is kept of it.
SUMMARY_MAX_TOKENS = 1024
SUMMARY_MAX_CHARACTERS = 6000


def summary_max_tokens(context_tokens: int) -> int:
    """The summary's cap within a request of `context_tokens` (CONTEXT_TOKENS)."""
    return max(64, min(SUMMARY_MAX_TOKENS, context_tokens // 4))


# Of each message folded in, the model reads this much (a long answer's start says enough).
FOLDED_MESSAGE_CHARACTERS = 4000
# Messages from the trim of MAX_MESSAGES_PER_SESSION at which the oldest are summarised ahead
# of it: three turns of room, so that a summary that fails can be tried again twice.
TRIM_AHEAD_MESSAGES = 6

SUMMARY_INSTRUCTIONS = (
    "You keep the running summary of a conversation between a user and an assistant. You are "
    "given the summary so far (possibly empty) and the messages that follow it. Write the new "
    "summary: every fact, name, number, date, decision, preference and open question the "
    "assistant will need to carry on the conversation, most important first, in the language "
    "of the conversation. Plain sentences, no preamble, at most 400 words."
)
# How the summary is put before the recent messages of a turn's request.
SUMMARY_PREFACE = "Summary of the earlier part of this conversation (its messages are not shown):"


def summary_message(summary: str) -> ChatMessage:
    return ChatMessage(role="system", content=f"{SUMMARY_PREFACE}\n{summary}")


def summary_tokens(summary: str) -> int:
    """What `summary` takes as a turn sends it (stored with it: begin_turn.lua counts it)."""
    return count_tokens(str(summary_message(summary).content))


def fold_point(
    *,
    covered: int,
    sent: Sequence[int],
    answer_seq: int,
    is_cut: bool,
    stored_count: int,
    max_messages: int,
) -> int | None:
    """The seq up to which a new summary should stand in for the session's messages, after a
    turn that sent the messages `sent` (seqs, oldest first) and stored its answer as
    `answer_seq`; None when nothing needs it.

    Needed when the turn left out messages the summary does not cover (`is_cut`), or when the
    session is within TRIM_AHEAD_MESSAGES of MAX_MESSAGES_PER_SESSION and the messages the
    next trims take are not covered. Then everything older than the newest half of what the
    turn sent (at most half of MAX_MESSAGES_PER_SESSION, at least the last exchange) is
    folded in: one summary serves many turns, and recent messages keep their own words.
    """
    oldest_stored = answer_seq - stored_count + 1
    is_near_trim = (
        stored_count >= max_messages - TRIM_AHEAD_MESSAGES
        and covered < oldest_stored + TRIM_AHEAD_MESSAGES
    )
    if not (is_cut or is_near_trim):
        return None
    recent = [*sent, answer_seq]
    keep = min(max(2, len(recent) // 2), max(2, max_messages // 2))
    up_to = recent[-keep - 1] if len(recent) > keep else covered
    if is_cut and sent:
        up_to = max(up_to, sent[0] - 1)
    return up_to if up_to > covered else None


@dataclass(frozen=True, slots=True)
class Fold:
    """One summary to make: session `session_id`'s messages up to `up_to`, billed to
    `person`, at most `max_tokens` long."""

    session_id: str
    person: str
    up_to: int
    max_tokens: int = SUMMARY_MAX_TOKENS


class SummaryModel(Protocol):
    """What a summary needs of the model provider (core.chat.ChatModel has it)."""

    def stream(
        self, messages: Sequence[ChatMessage], *, model: str, max_tokens: int | None = None
    ) -> AsyncIterator[StreamEvent]: ...


class Summarizer:
    """Makes summaries in the background; one per process, `close()` it at shutdown."""

    def __init__(
        self,
        store: SummaryStore,
        model: SummaryModel,
        *,
        summary_model: str,
        max_messages: int,
    ) -> None:
        self._store = store
        self._model = model
        self.summary_model = summary_model
        self._max_messages = max_messages  # MAX_MESSAGES_PER_SESSION
        self._tasks: set[asyncio.Task[bool]] = set()

    def after_turn(
        self,
        session_id: str,
        *,
        person: str,
        covered: int,
        sent: Sequence[int],
        answer_seq: int,
        is_cut: bool,
        stored_count: int,
        context_tokens: int,
    ) -> None:
        """A turn's answer is stored: start a summary if its messages need one (`fold_point`),
        billed to `person`, sized for a request of `context_tokens` (summary_max_tokens)."""
        up_to = fold_point(
            covered=covered, sent=sent, answer_seq=answer_seq, is_cut=is_cut,
            stored_count=stored_count, max_messages=self._max_messages,
        )  # fmt: skip
        if up_to is not None:
            self.start(Fold(session_id, person, up_to, summary_max_tokens(context_tokens)))

    def start(self, fold: Fold) -> None:
        """Make the summary in a task of its own: the caller's reply is not held."""
        task = asyncio.create_task(self.summarize(fold), name=f"summary-{fold.session_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, seconds: float | None = None) -> None:
        """Until the summaries under way are made (or `seconds` have passed)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=seconds)

    async def close(self, grace_seconds: float) -> None:
        """Give the summaries under way `grace_seconds`, then cancel the rest (tried again
        after a later turn)."""
        await self.wait(grace_seconds)
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def summarize(self, fold: Fold) -> bool:
        """Make and store the summary; False when it was not needed or could not be made."""
        token = secrets.token_hex(12)
        source: SummarySource | None = None
        stored = False
        try:
            source = await self._store.claim(fold.session_id, token, fold.up_to)
            if source is not None:
                stored = await self._made(fold, token, source)
        except ChatbridgeError as error:
            log.warning("summary.failed", error=error.code, model=self.summary_model)
        finally:
            if source is not None and not stored:  # else save_summary.lua let the claim go
                with contextlib.suppress(ChatbridgeError):
                    await self._store.release(fold.session_id, token)
        return stored

    async def _made(self, fold: Fold, token: str, source: SummarySource) -> bool:
        request = summary_request(source)
        summary, usage = await self._ask(request, fold.max_tokens)
        if not summary:
            log.warning("summary.failed", error="model_empty_answer", model=self.summary_model)
            return False
        spent = usage.total_tokens if usage else _estimated_tokens(request, summary)
        await self._store.charge(fold.person, token, spent, usage)
        stored = await self._store.save(
            fold.session_id, token, source, fold.up_to, summary, tokens=summary_tokens(summary)
        )
        log.info("summary.stored", up_to=fold.up_to, stored=stored, characters=len(summary))
        return stored

    async def _ask(
        self, request: Sequence[ChatMessage], max_tokens: int
    ) -> tuple[str, Usage | None]:
        parts: list[str] = []
        async for event in self._model.stream(
            request, model=self.summary_model, max_tokens=max_tokens
        ):
            if isinstance(event, CompletionDone):
                text = "".join(parts).strip()[:SUMMARY_MAX_CHARACTERS]
                return text, event.usage
            parts.append(event.text)
        return "", None


def _estimated_tokens(request: Sequence[ChatMessage], summary: str) -> int:
    """What a summary cost when the model reported no usage."""
    return sum(estimated_tokens(str(m.content)) for m in request) + estimated_tokens(summary)


def summary_request(source: SummarySource) -> list[ChatMessage]:
    """What the summary model is sent: the instructions, the summary so far and the messages."""
    lines = [f"Summary so far:\n{source.summary or '(none yet)'}", "", "Messages that follow it:"]
    lines += [_transcript_line(message) for message in source.messages]
    return [
        ChatMessage(role="system", content=SUMMARY_INSTRUCTIONS),
        ChatMessage(role="user", content="\n".join(lines)),
    ]


def _transcript_line(message: ContextEntry) -> str:
    speaker = "User" if message.role is Role.USER else "Assistant"
    text = message.content
    if len(text) > FOLDED_MESSAGE_CHARACTERS:
        text = text[:FOLDED_MESSAGE_CHARACTERS] + " […]"
    if message.attachments:
        names = ", ".join(attachment.name for attachment in message.attachments)
        text = f"{text} [sent files: {names}]".strip()
    return f"{speaker}: {text}"
