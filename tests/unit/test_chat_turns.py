"""Chat turns (core/turn.py) in memory: the scripted model and the in-memory store of tests/fakes.

What a turn does with the model's stream, the session's lock, the context, the metrics and the
events, without Redis or an HTTP server; tests/integration/test_chat.py runs turns on the real
store and client.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from core.chat import ChatService, TurnSettings
from core.conversation import Notice, Usage
from core.errors import (
    ChatbridgeError,
    ModelError,
    ModelNotConfigured,
    ModelRateLimited,
    ModelRejected,
    ModelStreamBroken,
    ModelTimeout,
    ModelUnavailable,
    NothingToRetry,
    ServiceStopping,
    SessionBusy,
    SessionNotFound,
    TurnInterrupted,
    TurnLockLost,
    TurnTimeout,
)
from core.events.publisher import EventType
from core.observability.metrics import Metrics
from core.tokens import MESSAGE_OVERHEAD_TOKENS, count_tokens
from tests.fakes.chat_model import (
    Gate,
    ScriptedModel,
    answer,
    cut_off,
    endless,
    failure,
    held,
)
from tests.fakes.events import RecordedEvents
from tests.fakes.turn_store import InMemoryTurnStore
from tests.unit.conftest import MODEL, SYSTEM_PROMPT
from tests.waiting import until

USER = "telegram:42"
OTHER_USER = "discord:7"
FRONT = "telegram"
OTHER_REPLICA = "lock-token-of-another-replica"
SYSTEM = ("system", SYSTEM_PROMPT)


async def run_turn(chat: ChatService[InMemoryTurnStore], text: str, user: str = USER) -> str:
    async with chat.turn(text, user_id=user, front=FRONT) as turn:
        return "".join([delta async for delta in turn.deltas()])


async def collect(chat: ChatService[InMemoryTurnStore], text: str, seen: list[str]) -> None:
    """Stream a turn into `seen`, so a test can look at what arrived before an error."""
    async with chat.turn(text, user_id=USER, front=FRONT) as turn:
        async for delta in turn.deltas():
            seen.append(delta)


async def retry_turn(chat: ChatService[InMemoryTurnStore], user: str = USER) -> str:
    async with chat.retry(user_id=user, front=FRONT) as turn:
        return "".join([delta async for delta in turn.deltas()])


async def fail_at_the_first_delta(chat: ChatService[InMemoryTurnStore], text: str) -> None:
    """A front whose own code fails while it handles the answer."""
    async with chat.turn(text, user_id=USER, front=FRONT) as turn:
        async for _ in turn.deltas():
            raise RuntimeError("the front broke")


async def history(store: InMemoryTurnStore, user: str = USER) -> list[tuple[str, str]]:
    session = await store.active_session(user)
    assert session is not None
    return store.conversation(session.id)


async def hold_the_session(store: InMemoryTurnStore) -> str:
    """Lock the user's session as a turn of another replica would; returns the session id."""
    start = await store.begin_turn(
        USER, "holding", session_id=None, lock_token=OTHER_REPLICA, lock_ttl_ms=30_000,
        context_tokens=16_000, default_model=MODEL,
    )  # fmt: skip
    return start.session.id


def with_settings(
    chat: ChatService[InMemoryTurnStore], **changes: object
) -> ChatService[InMemoryTurnStore]:
    """The same store and model, with some turn settings changed."""
    return ChatService(chat.store, chat.model, replace(chat.settings, **changes))  # type: ignore[arg-type]


def sent_messages(model: ScriptedModel) -> list[tuple[str, str]]:
    """What the last request sent the model, as (role, content)."""
    return [(m.role, m.content) for m in model.requests[-1].messages]


# --- the answer -------------------------------------------------------------------------------


async def test_deltas_reach_the_consumer_in_the_order_the_model_sends_them(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel
):
    model.then(answer("Tides ", "follow ", "the ", "Moon."))
    seen: list[str] = []
    await collect(chat, "How do tides work?", seen)
    assert seen == ["Tides ", "follow ", "the ", "Moon."]


async def test_the_reply_is_stored_once_with_the_answering_model_and_its_usage(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    usage = Usage(prompt_tokens=12, completion_tokens=3, cost=0.0004)
    model.then(answer("Hel", "lo", model="backup/model", usage=usage))
    async with chat.turn("hi", user_id=USER, front=FRONT) as turn:
        _ = [delta async for delta in turn.deltas()]

    reply, session = turn.outcome()
    assert (reply.content, reply.model, reply.usage) == ("Hello", "backup/model", usage)
    assert session.message_count == 2
    assert await history(store) == [("user", "hi"), ("assistant", "Hello")]
    stored = (await store.recent_messages(session.id, 1)).messages[0]
    assert (stored.model, stored.usage) == ("backup/model", usage)
    assert model.requests[-1].model == MODEL


async def test_a_turn_asks_the_model_it_names_over_the_sessions(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel
):
    async with chat.turn("hi", user_id=USER, model="other/model") as turn:
        _ = [delta async for delta in turn.deltas()]
    assert model.requests[-1].model == "other/model"
    assert turn.outcome()[0].model == "other/model"


async def test_a_turn_on_another_users_session_is_not_found_and_asks_nothing(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    await run_turn(chat, "mine", user=OTHER_USER)
    theirs = await store.active_session(OTHER_USER)
    assert theirs is not None
    with pytest.raises(SessionNotFound):
        async with chat.turn("let me in", user_id=USER, session_id=theirs.id):
            pass
    assert len(model.requests) == 1
    assert store.conversation(theirs.id) == [("user", "mine"), ("assistant", "echo: mine")]


# --- the model fails --------------------------------------------------------------------------


async def test_a_cut_stream_raises_stream_broken_stores_no_answer_and_keeps_the_question(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    model.then(cut_off("one ", "two "), answer("one two three"))
    seen: list[str] = []
    with pytest.raises(ModelStreamBroken) as broken:
        await collect(chat, "count to three", seen)
    assert broken.value.partial_text == "one two " == "".join(seen)
    assert await history(store) == [("user", "count to three")]

    assert await retry_turn(chat) == "one two three"
    assert sent_messages(model) == [SYSTEM, ("user", "count to three")]
    assert await history(store) == [("user", "count to three"), ("assistant", "one two three")]


async def test_an_error_after_text_is_a_broken_stream_carrying_that_text(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    model.then(failure(ModelUnavailable(), after=("half ", "an ")))
    with pytest.raises(ModelStreamBroken) as broken:
        await run_turn(chat, "tell me")
    assert broken.value.partial_text == "half an "
    assert await history(store) == [("user", "tell me")]


@pytest.mark.parametrize(
    "error",
    [
        ModelUnavailable(),
        ModelRateLimited(retry_after=3),
        ModelTimeout(),
        ModelRejected(status=402),
    ],
    ids=lambda error: error.code,
)
async def test_a_model_error_before_any_text_reaches_the_caller_and_stores_no_answer(
    chat: ChatService[InMemoryTurnStore],
    model: ScriptedModel,
    store: InMemoryTurnStore,
    error: ModelError,
):
    model.then(failure(error))
    seen: list[str] = []
    with pytest.raises(type(error)) as raised:
        await collect(chat, "are you there?", seen)
    assert raised.value is error
    assert seen == []
    assert await history(store) == [("user", "are you there?")]
    assert await run_turn(chat, "now?") == "echo: now?"


async def test_a_stream_that_ends_without_its_final_event_is_broken_not_an_answer(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    model.then(cut_off())
    with pytest.raises(ModelStreamBroken) as broken:
        await run_turn(chat, "hello")
    assert broken.value.partial_text == ""
    assert await history(store) == [("user", "hello")]


async def test_without_a_configured_model_nothing_is_stored_or_asked(
    store: InMemoryTurnStore, events: RecordedEvents, turn_settings: TurnSettings
):
    keyless = ScriptedModel(is_configured=False)
    chat = ChatService(store, keyless, turn_settings)
    with pytest.raises(ModelNotConfigured):
        await run_turn(chat, "hello")
    assert await store.active_session(USER) is None
    assert keyless.requests == []
    assert store.locks == {}
    assert events.of_type(EventType.SESSION_CREATED) == []


# --- the session's lock -----------------------------------------------------------------------


async def test_a_completed_turn_leaves_its_session_unlocked(
    chat: ChatService[InMemoryTurnStore], store: InMemoryTurnStore
):
    await run_turn(chat, "hello")
    assert store.locks == {}


async def test_the_lock_is_released_when_the_model_fails(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    model.then(failure(ModelUnavailable()), cut_off("par", "tial"))
    for _ in range(2):
        with pytest.raises(ModelError):
            await run_turn(chat, "again")
        assert store.locks == {}


async def test_the_lock_is_released_when_the_consumer_stops_early_or_fails(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    model.then(answer("a ", "long ", "answer"), answer("another ", "one"))
    async with chat.turn("start", user_id=USER) as turn:
        async for _ in turn.deltas():
            break
    assert store.locks == {}
    with pytest.raises(RuntimeError, match="the front broke"):
        await fail_at_the_first_delta(chat, "again")
    assert store.locks == {}
    assert await history(store) == [("user", "start"), ("user", "again")]


async def test_a_consumer_that_stops_early_leaves_no_model_stream_open(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel
):
    model.then(answer("a ", "long ", "answer"))
    async with chat.turn("start", user_id=USER) as turn:
        async for _ in turn.deltas():
            break
    assert model.open_streams == 0


async def test_the_lock_is_kept_alive_while_a_long_answer_streams(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    gate = Gate()
    model.then(held(gate, "slow "))
    quick_lock = with_settings(chat, lock_ttl_ms=30)  # extended every 10 ms
    turn = asyncio.create_task(run_turn(quick_lock, "take your time"))
    await gate.reached()
    await until(lambda: store.lock_extensions >= 2, what="the lock extended twice")
    assert len(store.locks) == 1
    gate.open()
    assert await turn == "slow "
    assert store.locks == {}


async def test_a_busy_session_is_waited_for_then_the_turn_proceeds(
    chat: ChatService[InMemoryTurnStore], store: InMemoryTurnStore
):
    session_id = await hold_the_session(store)
    waiting = asyncio.create_task(run_turn(chat, "me next"))
    await until(lambda: store.busy_refusals >= 1, what="the turn refused once")
    assert not waiting.done()

    await store.release_lock(session_id, OTHER_REPLICA)
    assert await waiting == "echo: me next"
    assert store.conversation(session_id) == [
        ("user", "holding"),
        ("user", "me next"),
        ("assistant", "echo: me next"),
    ]


async def test_a_turn_waiting_for_a_busy_session_asks_again_under_its_one_lock_token(
    chat: ChatService[InMemoryTurnStore], store: InMemoryTurnStore
):
    session_id = await hold_the_session(store)
    waiting = asyncio.create_task(run_turn(chat, "me next"))
    await until(lambda: store.busy_refusals >= 2, what="the turn refused twice")
    await store.release_lock(session_id, OTHER_REPLICA)
    assert await waiting == "echo: me next"

    # The token names the turn: a repeated first round trip (a retry after a lost reply)
    # must find the turn it began, not start another.
    attempts = store.begin_tokens[1:]  # after the holder's
    assert len(attempts) >= 3
    assert len(set(attempts)) == 1


async def test_a_session_held_past_lock_wait_seconds_answers_busy_after_trying_again(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    session_id = await hold_the_session(store)
    with pytest.raises(SessionBusy):
        await run_turn(with_settings(chat, lock_wait_seconds=0.3), "me too")
    assert store.busy_refusals >= 2
    assert model.requests == []
    assert store.conversation(session_id) == [("user", "holding")]


async def test_with_no_lock_wait_a_busy_session_answers_busy_at_once(
    chat: ChatService[InMemoryTurnStore], store: InMemoryTurnStore
):
    await hold_the_session(store)
    with pytest.raises(SessionBusy):
        await run_turn(with_settings(chat, lock_wait_seconds=0), "me too")
    assert store.busy_refusals == 1


async def test_turns_in_one_session_never_interleave(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    gate = Gate()
    model.then(held(gate, "echo: one"))
    turns = [asyncio.create_task(run_turn(chat, text)) for text in ("one", "two", "three")]
    await gate.reached()
    await until(lambda: store.busy_refusals >= 2, what="the other two turns waiting")
    gate.open()
    await asyncio.gather(*turns)

    stored = await history(store)
    assert len(stored) == 6
    for question, reply in zip(stored[::2], stored[1::2], strict=True):
        assert question[0] == "user"
        assert reply == ("assistant", f"echo: {question[1]}")


# --- a lost lock ------------------------------------------------------------------------------


async def test_a_turn_whose_lock_another_turn_took_ends_at_once_and_stores_nothing(
    chat: ChatService[InMemoryTurnStore],
    model: ScriptedModel,
    store: InMemoryTurnStore,
    metrics: Metrics,
):
    gate = Gate()
    model.then(held(gate, "half ", "an answer"))
    seen: list[str] = []
    quick_lock = with_settings(chat, lock_ttl_ms=30)  # extended every 10 ms
    turn = asyncio.create_task(collect(quick_lock, "take your time", seen))
    await gate.reached()
    [session_id] = store.locks
    store.locks[session_id] = OTHER_REPLICA  # its lock lapsed and another turn took it

    with pytest.raises(TurnLockLost) as lost:
        await turn  # while the model still holds its answer
    assert lost.value.partial_text == "half an answer" == "".join(seen)
    assert await history(store) == [("user", "take your time")]
    assert store.locks == {session_id: OTHER_REPLICA}
    assert model.open_streams == 0
    assert turns_counted(metrics) == turns_counted(metrics, "turn_lock_lost") == 1
    assert model_calls_timed(metrics) == 0  # not the model's failure


async def test_an_answer_whose_session_another_turn_used_meanwhile_is_not_stored(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    gate = Gate()
    model.then(held(gate, "first answer"))
    first = asyncio.create_task(run_turn(chat, "first"))
    await gate.reached()
    store.locks.clear()  # lapsed
    assert await run_turn(chat, "second") == "echo: second"
    gate.open()

    with pytest.raises(TurnLockLost) as lost:
        await first
    assert lost.value.partial_text == "first answer"
    assert await history(store) == [
        ("user", "first"),
        ("user", "second"),
        ("assistant", "echo: second"),
    ]
    assert store.locks == {}


async def test_a_lapsed_lock_nobody_took_is_taken_back_and_the_answer_stored(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    gate = Gate()
    model.then(held(gate, "kept"))
    first = asyncio.create_task(run_turn(with_settings(chat, lock_ttl_ms=30), "first"))
    await gate.reached()
    [(session_id, token)] = store.locks.items()
    store.locks.clear()  # lapsed, and nobody took the session
    await until(lambda: store.locks == {session_id: token}, what="the lock taken back")
    gate.open()

    assert await first == "kept"
    assert await history(store) == [("user", "first"), ("assistant", "kept")]
    assert store.locks == {}


# --- TURN_TIMEOUT -----------------------------------------------------------------------------


async def test_an_answer_past_turn_timeout_ends_like_a_cut_stream_keeping_the_question(
    chat: ChatService[InMemoryTurnStore],
    model: ScriptedModel,
    store: InMemoryTurnStore,
    metrics: Metrics,
):
    model.then(endless("partial "))
    seen: list[str] = []
    with pytest.raises(TurnTimeout) as timed_out:
        await collect(with_settings(chat, turn_timeout_seconds=0.05), "too long", seen)
    assert timed_out.value.partial_text == "partial " == "".join(seen)
    assert timed_out.value.seconds == 0.05
    assert await history(store) == [("user", "too long")]
    assert store.locks == {}
    assert model.open_streams == 0
    assert turns_counted(metrics) == turns_counted(metrics, "turn_timeout") == 1
    assert await run_turn(chat, "next") == "echo: next"


# --- stopping the service ---------------------------------------------------------------------


async def test_stop_interrupts_a_turn_hanging_on_the_model_and_keeps_the_question(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    gate = Gate()
    model.then(held(gate, "partial "))
    seen: list[str] = []
    turn = asyncio.create_task(collect(chat, "too slow", seen))
    await gate.reached()

    assert await chat.stop_turns(grace_seconds=0) == 1
    with pytest.raises(TurnInterrupted) as interrupted:
        await turn
    assert interrupted.value.partial_text == "partial " == "".join(seen)
    assert await history(store) == [("user", "too slow")]
    assert store.locks == {}
    assert chat.running_turns == 0
    assert model.open_streams == 0


async def test_a_turn_that_ends_within_the_grace_is_stored_whole(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    gate = Gate()
    model.then(held(gate, "finished"))
    turn = asyncio.create_task(run_turn(chat, "finish me"))
    await gate.reached()
    stopping = asyncio.create_task(chat.stop_turns(grace_seconds=30))
    await until(lambda: chat.is_stopping, what="the stop")

    gate.open()
    assert await stopping == 0
    assert await turn == "finished"
    assert await history(store) == [("user", "finish me"), ("assistant", "finished")]


async def test_once_stopping_new_turns_and_retries_are_refused_storing_nothing(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    assert await chat.stop_turns(grace_seconds=30) == 0
    with pytest.raises(ServiceStopping):
        await run_turn(chat, "after")
    with pytest.raises(ServiceStopping):
        await retry_turn(chat)
    assert await store.active_session(USER) is None
    assert model.requests == []


async def test_a_turn_waiting_for_the_lock_is_refused_when_the_service_stops(
    chat: ChatService[InMemoryTurnStore], store: InMemoryTurnStore
):
    session_id = await hold_the_session(store)
    waiting = asyncio.create_task(run_turn(chat, "waiting"))
    await until(lambda: store.busy_refusals >= 1, what="the waiting turn")

    assert await chat.stop_turns(grace_seconds=30) == 0
    with pytest.raises(ServiceStopping):
        await waiting
    assert store.conversation(session_id) == [("user", "holding")]


# --- the context the model gets ---------------------------------------------------------------


async def test_the_model_gets_the_system_prompt_then_the_conversation(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel
):
    await run_turn(chat, "first")
    await run_turn(chat, "second")
    assert sent_messages(model) == [
        SYSTEM,
        ("user", "first"),
        ("assistant", "echo: first"),
        ("user", "second"),
    ]


async def test_without_a_system_prompt_only_the_conversation_is_sent(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel
):
    await run_turn(with_settings(chat, system_prompt=""), "hello")
    assert sent_messages(model) == [("user", "hello")]


def cost(text: str) -> int:
    """What a message takes of CONTEXT_TOKENS."""
    return count_tokens(text) + MESSAGE_OVERHEAD_TOKENS


# The system prompt, then `aaaa`, `bbbb`, `cc`: the budget at, above and below each boundary.
ALL = cost(SYSTEM_PROMPT) + cost("aaaa") + cost("bbbb") + cost("cc")
LAST_TWO = ALL - cost("aaaa")
LAST = LAST_TWO - cost("bbbb")


@pytest.mark.parametrize(
    ("budget", "kept"),
    [
        (ALL + 1, [("user", "aaaa"), ("assistant", "bbbb"), ("user", "cc")]),
        (ALL, [("user", "aaaa"), ("assistant", "bbbb"), ("user", "cc")]),
        (ALL - 1, [("assistant", "bbbb"), ("user", "cc")]),
        (LAST_TWO, [("assistant", "bbbb"), ("user", "cc")]),
        (LAST_TWO - 1, [("user", "cc")]),
        (LAST, [("user", "cc")]),
        (1, [("user", "cc")]),  # the newest message goes even when it alone is over
    ],
)
async def test_the_context_is_the_newest_messages_within_context_tokens(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, budget: int, kept: list[object]
):
    budgeted = with_settings(chat, context_tokens=budget)
    model.then(answer("bbbb"))
    await run_turn(budgeted, "aaaa")
    await run_turn(budgeted, "cc")
    assert sent_messages(model) == [SYSTEM, *kept]


async def test_the_store_is_asked_for_context_tokens_of_stored_messages(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel
):
    budgeted = with_settings(chat, context_tokens=2)
    assert budgeted.context_tokens == 2
    for text in ("one", "two"):
        await run_turn(budgeted, text)
    assert sent_messages(model) == [SYSTEM, ("user", "two")]


# --- what the reply tells besides: lost context ----------------------------------------------


async def notices_of_turn(chat: ChatService[InMemoryTurnStore], text: str) -> tuple[Notice, ...]:
    async with chat.turn(text, user_id=USER, front=FRONT) as turn:
        _ = [delta async for delta in turn.deltas()]
    return turn.notices


@pytest.mark.parametrize(("budget", "is_lost"), [(ALL + 1, False), (ALL, False), (ALL - 1, True)])
async def test_a_turn_whose_token_budget_leaves_messages_out_says_so(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, budget: int, is_lost: bool
):
    budgeted = with_settings(chat, context_tokens=budget)
    model.then(answer("bbbb"))
    assert await notices_of_turn(budgeted, "aaaa") == ()
    assert await notices_of_turn(budgeted, "cc") == ((Notice.CONTEXT_LOST,) if is_lost else ())


# One, two, three: `one`, `echo: one`, `two` fit; then the oldest falls out.
SHORT = cost(SYSTEM_PROMPT) + cost("one") + cost("echo: one") + cost("two")


async def test_lost_context_is_told_by_the_first_answer_only(chat: ChatService[InMemoryTurnStore]):
    short = with_settings(chat, context_tokens=SHORT)
    assert await notices_of_turn(short, "one") == ()
    assert await notices_of_turn(short, "two") == ()  # the third message: all of it is sent
    assert await notices_of_turn(short, "three") == (Notice.CONTEXT_LOST,)
    assert await notices_of_turn(short, "four") == ()


async def test_lost_context_a_failed_turn_could_not_tell_is_told_by_the_next_answer(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel
):
    short = with_settings(chat, context_tokens=SHORT)
    await run_turn(short, "one")
    model.then(failure(ModelUnavailable()))
    with pytest.raises(ModelUnavailable):
        await run_turn(short, "two")
    assert await notices_of_turn(short, "three") == (Notice.CONTEXT_LOST,)
    assert await notices_of_turn(short, "four") == ()


# --- /retry -----------------------------------------------------------------------------------


async def test_retry_replaces_the_answer_and_asks_with_the_question_last(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    await run_turn(chat, "pick a number")
    model.then(answer("seven"))
    assert await retry_turn(chat) == "seven"
    assert sent_messages(model) == [SYSTEM, ("user", "pick a number")]
    assert await history(store) == [("user", "pick a number"), ("assistant", "seven")]


async def test_retry_without_any_message_is_refused_and_creates_nothing(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    with pytest.raises(NothingToRetry):
        await retry_turn(chat)
    assert await store.active_session(USER) is None
    assert model.requests == []


# --- metrics and events: once per turn --------------------------------------------------------


def turns_counted(metrics: Metrics, outcome: str | None = None) -> float:
    """Turns counted under `outcome` (None: under every outcome)."""
    return sum(
        sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "chatbridge_turns_total"
        and (outcome is None or sample.labels["outcome"] == outcome)
    )


def model_calls_timed(metrics: Metrics) -> float:
    return (
        metrics.registry.get_sample_value(
            "chatbridge_model_latency_seconds_count", {"model": MODEL}
        )
        or 0.0
    )


async def test_a_completed_turn_is_counted_and_published_once(
    chat: ChatService[InMemoryTurnStore],
    model: ScriptedModel,
    metrics: Metrics,
    events: RecordedEvents,
):
    model.then(answer("hi", usage=Usage(5, 1)))
    async with chat.turn("hello", user_id=USER, front=FRONT) as turn:
        _ = [delta async for delta in turn.deltas()]

    assert turns_counted(metrics) == turns_counted(metrics, "completed") == 1
    assert model_calls_timed(metrics) == 1
    assert events.of_type(EventType.TURN_FAILED) == []
    assert events.of_type(EventType.TURN_COMPLETED) == [
        {
            "sessionId": turn.session.id,
            "userId": USER,
            "front": FRONT,
            "model": MODEL,
            "promptTokens": 5,
            "completionTokens": 1,
            "cost": None,
        }
    ]
    assert len(events.of_type(EventType.SESSION_CREATED)) == 1


async def end_early(chat: ChatService[InMemoryTurnStore], model: ScriptedModel, how: str) -> None:
    """End a turn without an answer, with the error whose code `how` is."""
    if how == "model_unavailable":
        model.then(failure(ModelUnavailable()))
    elif how == "model_stream_broken":
        model.then(cut_off("half"))
    elif how == "session_busy":
        await hold_the_session(chat.store)
        chat = with_settings(chat, lock_wait_seconds=0)
    elif how == "service_stopping":
        await chat.stop_turns(grace_seconds=0)
    with pytest.raises(ChatbridgeError) as ended:
        await run_turn(chat, "hello")
    assert ended.value.code == how


@pytest.mark.parametrize(
    "how", ["model_unavailable", "model_stream_broken", "session_busy", "service_stopping"]
)
async def test_a_turn_without_an_answer_is_counted_and_published_once_under_its_error(
    chat: ChatService[InMemoryTurnStore],
    model: ScriptedModel,
    metrics: Metrics,
    events: RecordedEvents,
    how: str,
):
    await end_early(chat, model, how)
    assert turns_counted(metrics) == turns_counted(metrics, how) == 1
    assert events.of_type(EventType.TURN_COMPLETED) == []
    [failed] = events.of_type(EventType.TURN_FAILED)
    assert (failed["userId"], failed["front"], failed["error"]) == (USER, FRONT, how)


async def test_an_abandoned_turn_is_counted_and_published_once_as_abandoned(
    chat: ChatService[InMemoryTurnStore], metrics: Metrics, events: RecordedEvents
):
    async with chat.turn("hello", user_id=USER, front=FRONT) as turn:
        async for _ in turn.deltas():
            break
    assert turns_counted(metrics) == turns_counted(metrics, "abandoned") == 1
    [failed] = events.of_type(EventType.TURN_FAILED)
    assert failed["error"] == "abandoned"
    assert failed["sessionId"] == turn.session.id


async def test_a_turn_without_a_model_is_counted_once_and_never_times_the_model(
    store: InMemoryTurnStore, metrics: Metrics, events: RecordedEvents
):
    chat = ChatService(store, ScriptedModel(is_configured=False), TurnSettings("", MODEL))
    with pytest.raises(ModelNotConfigured):
        await run_turn(chat, "hello")
    assert turns_counted(metrics) == turns_counted(metrics, "model_not_configured") == 1
    assert model_calls_timed(metrics) == 0
    [failed] = events.of_type(EventType.TURN_FAILED)
    assert (failed["sessionId"], failed["userId"]) == (None, USER)


async def test_an_interrupted_turn_is_counted_once_and_not_blamed_on_the_model(
    chat: ChatService[InMemoryTurnStore],
    model: ScriptedModel,
    metrics: Metrics,
    events: RecordedEvents,
):
    gate = Gate()
    model.then(held(gate, "partial "))
    turn = asyncio.create_task(run_turn(chat, "too slow"))
    await gate.reached()
    await chat.stop_turns(grace_seconds=0)
    with pytest.raises(TurnInterrupted):
        await turn
    assert turns_counted(metrics) == turns_counted(metrics, "turn_interrupted") == 1
    assert model_calls_timed(metrics) == 0
    assert [e["error"] for e in events.of_type(EventType.TURN_FAILED)] == ["turn_interrupted"]
