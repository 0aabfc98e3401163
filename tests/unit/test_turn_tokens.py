"""What a turn asks the model to cap, reserves of the daily budget, and settles to (core/turn.py).

The in-memory store keeps what each turn reserved and settled to; tests/integration/
test_token_budget.py holds the budget itself against a real redis-server and the fake OpenRouter.
"""

from __future__ import annotations

import asyncio

import pytest

from core.chat import ChatService
from core.conversation import Usage, estimated_tokens
from core.errors import (
    ModelCircuitOpen,
    ModelEmptyAnswer,
    ModelRejected,
    ModelStreamBroken,
    ModelUnavailable,
    TurnInterrupted,
    TurnLockLost,
    TurnTimeout,
)
from core.tokens import MESSAGE_OVERHEAD_TOKENS, count_tokens
from tests.fakes.chat_model import Gate, ScriptedModel, answer, cut_off, endless, failure, held
from tests.fakes.turn_store import InMemoryTurnStore
from tests.unit.conftest import SYSTEM_PROMPT
from tests.unit.test_chat_turns import USER, collect, run_turn, with_settings

QUESTION = "How far is the Moon?"


def the_turn(store: InMemoryTurnStore):  # type: ignore[no-untyped-def]
    (record,) = store.turns.values()
    return record


def prompt_estimate(model: ScriptedModel) -> int:
    """What the turn counted of its request: cl100k_base tokens plus each message's overhead."""
    return sum(
        count_tokens(str(message.content)) + MESSAGE_OVERHEAD_TOKENS
        for message in model.requests[-1].messages
    )


async def test_the_answer_is_capped_at_max_completion_tokens_and_that_cap_reserved(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    capped = with_settings(chat, max_completion_tokens=512)
    await run_turn(capped, QUESTION)

    assert model.requests[-1].max_tokens == 512
    # begin_turn adds its estimate of the stored context to what the turn reserves.
    assert the_turn(store).reserved_tokens == 512 + estimated_tokens(SYSTEM_PROMPT)


async def test_by_default_an_answer_may_take_4096_tokens(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel
):
    await run_turn(chat, QUESTION)
    assert model.requests[-1].max_tokens == 4096


async def test_an_answer_settles_to_the_usage_the_model_reported(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    model.then(answer("About ", "384,400 km.", usage=Usage(prompt_tokens=21, completion_tokens=9)))
    await run_turn(chat, QUESTION)
    assert the_turn(store).spent_tokens == 30


async def test_an_answer_without_reported_usage_settles_to_its_estimate(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    model.then(answer("About ", "384,400 km.", usage=None))
    await run_turn(chat, QUESTION)
    expected = prompt_estimate(model) + estimated_tokens("About 384,400 km.")
    assert the_turn(store).spent_tokens == expected > 0


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(cut_off("About ", "384,"), id="cut stream"),
        pytest.param(failure(ModelUnavailable(), after=["About ", "384,"]), id="error after text"),
    ],
)
async def test_a_broken_answer_settles_to_what_it_was_sent_and_streamed(
    chat: ChatService[InMemoryTurnStore],
    model: ScriptedModel,
    store: InMemoryTurnStore,
    script: object,
):
    model.then(script)  # type: ignore[arg-type]
    with pytest.raises(ModelStreamBroken):
        await run_turn(chat, QUESTION)
    assert the_turn(store).spent_tokens == prompt_estimate(model) + estimated_tokens("About 384,")


def reached_the_model(error: ModelEmptyAnswer, reported_tokens: int | None) -> ModelEmptyAnswer:
    """The error as the client raises it once OpenRouter had answered 200 (core/llm/wire.py)."""
    error.reached_model = True
    error.reported_tokens = reported_tokens
    return error


async def test_a_failure_after_the_model_had_the_request_settles_to_its_reported_usage(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    model.then(failure(reached_the_model(ModelEmptyAnswer(), reported_tokens=17)))
    with pytest.raises(ModelEmptyAnswer):
        await run_turn(chat, QUESTION)
    assert the_turn(store).spent_tokens == 17


async def test_without_reported_usage_it_settles_to_the_prompts_estimate(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    model.then(failure(reached_the_model(ModelEmptyAnswer(), reported_tokens=None)))
    with pytest.raises(ModelEmptyAnswer):
        await run_turn(chat, QUESTION)
    assert the_turn(store).spent_tokens == prompt_estimate(model) > 0


@pytest.mark.parametrize(
    "error",
    [ModelRejected(status=400), ModelUnavailable(), ModelCircuitOpen(retry_after=5)],
    ids=["rejected", "error status", "breaker open"],
)
async def test_a_request_the_model_never_took_costs_nothing(
    chat: ChatService[InMemoryTurnStore],
    model: ScriptedModel,
    store: InMemoryTurnStore,
    error: Exception,
):
    model.then(failure(error))  # type: ignore[arg-type]
    with pytest.raises(type(error)):
        await run_turn(chat, QUESTION)
    assert the_turn(store).spent_tokens == 0


async def test_a_turn_that_never_asked_the_model_costs_nothing(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    async with chat.turn(QUESTION, user_id=USER):
        pass  # a front that failed before reading the answer
    assert the_turn(store).spent_tokens == 0
    assert model.requests == []


async def test_an_interrupted_answer_settles_to_what_it_was_sent_and_streamed(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    gate = Gate()
    model.then(held(gate, "About ", "384,"))
    seen: list[str] = []
    turn = asyncio.create_task(collect(chat, QUESTION, seen))
    await gate.reached()
    await chat.stop_turns(grace_seconds=0)

    with pytest.raises(TurnInterrupted):
        await turn
    assert the_turn(store).spent_tokens == prompt_estimate(model) + estimated_tokens("About 384,")


async def test_an_answer_past_turn_timeout_settles_to_what_it_was_sent_and_streamed(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    model.then(endless("About "))
    with pytest.raises(TurnTimeout):
        await run_turn(with_settings(chat, turn_timeout_seconds=0.05), QUESTION)
    assert the_turn(store).spent_tokens == prompt_estimate(model) + estimated_tokens("About ")


async def test_a_fenced_answer_still_settles_to_its_usage(
    chat: ChatService[InMemoryTurnStore], model: ScriptedModel, store: InMemoryTurnStore
):
    gate = Gate()
    model.then(held(gate, "About ", usage=Usage(prompt_tokens=20, completion_tokens=5)))
    turn = asyncio.create_task(run_turn(chat, QUESTION))
    await gate.reached()
    store.locks.clear()  # the lock lapsed ...
    session = await store.active_session(USER)
    assert session is not None
    async with chat.turn("Meanwhile", user_id=USER, session_id=session.id) as other:
        _ = [delta async for delta in other.deltas()]  # ... and another turn wrote
    gate.open()

    with pytest.raises(TurnLockLost):
        await turn
    fenced = next(r for r in store.turns.values() if r.start.user_seq == 1)
    assert fenced.spent_tokens == 25
