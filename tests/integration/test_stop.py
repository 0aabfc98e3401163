"""/stop (ChatService.stop_answer, the /stop command): the answer being written ends within a
second wherever it is written — in this process, or on another replica of the same Redis —
what it showed is stored marked stopped (the model sees it; /retry replaces it), and a stop
with nothing running, or on someone else's session, changes nothing.

Real store on each Redis topology, real OpenRouter client, the fake OpenRouter holding its
answer open (`pause`) so that the stop lands mid-answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from core.chat import ChatService, TurnSettings
from core.commands import CommandHandler, FileReply, Reply, TurnReply
from core.errors import SessionNotFound, TurnStopped
from core.llm.openrouter import OpenRouterClient, RetryPolicy
from core.messages import text
from core.sessions.keys import session_key
from core.sessions.store import SessionStore
from core.turn import Turn
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.waiting import until

ANA, BOB = "telegram:1", "telegram:2"
# The promise: a stop sent anywhere ends the answer within a second (the poll is 0.25 s).
STOP_WITHIN_SECONDS = 1.0
pytestmark = pytest.mark.all_redis_topologies


@pytest.fixture
async def patient_model(fake_openrouter: FakeOpenRouter) -> AsyncIterator[OpenRouterClient]:
    """Reads for long: only the stop may end an answer the fake holds open."""
    client = OpenRouterClient(
        api_key=SecretStr(fake_openrouter.api_key), base_url=fake_openrouter.base_url,
        read_timeout=60.0, retry=RetryPolicy(attempts=1),
    )  # fmt: skip
    yield client
    await client.aclose()


def replica(store: SessionStore, model: OpenRouterClient) -> ChatService[SessionStore]:
    """A ChatService of its own: another process on the same Redis, as far as a turn can tell."""
    return ChatService(store, model, TurnSettings("", "test/model", lock_wait_seconds=10))


class Streaming:
    """A turn streaming in the background, its deltas collected as they arrive."""

    def __init__(self, chat: ChatService[SessionStore], message: str, user: str = ANA) -> None:
        self.seen: list[str] = []
        self.turn: Turn | None = None
        self.task = asyncio.create_task(self._run(chat, message, user))

    async def _run(self, chat: ChatService[SessionStore], message: str, user: str) -> str:
        async with chat.turn(message, user_id=user) as turn:
            self.turn = turn
            async for delta in turn.deltas():
                self.seen.append(delta)
        return "".join(self.seen)

    @property
    def session_id(self) -> str:
        assert self.turn is not None
        return self.turn.session.id

    async def stopped(self) -> TurnStopped:
        with pytest.raises(TurnStopped) as ended:
            await self.task
        return ended.value


async def conversation(store: SessionStore, user: str = ANA) -> list[tuple[str, str, bool]]:
    session = await store.active_session(user)
    assert session is not None
    page = await store.read_messages(session.id, owner=user, limit=100)
    return [(m.role.value, m.content, m.stopped) for m in page.messages]


async def test_a_stop_from_another_replica_ends_the_answer_within_a_second_keeping_what_it_showed(
    store: SessionStore, patient_model: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=2)
    writing, elsewhere = replica(store, patient_model), replica(store, patient_model)
    answer = Streaming(writing, "tell me a long story")
    await until(lambda: len(answer.seen) == 2, what="two deltas")

    asked_at = time.monotonic()
    assert await elsewhere.stop_answer(answer.session_id, owner=ANA) is True
    stopped = await answer.stopped()
    took = time.monotonic() - asked_at

    assert took < STOP_WITHIN_SECONDS, f"the stop took {took:.2f} s"
    shown = "".join(answer.seen)
    assert stopped.partial_text == shown != ""
    assert await conversation(store) == [
        ("user", "tell me a long story", False),
        ("assistant", shown, True),
    ]
    gate.set()


async def test_the_model_sees_the_stopped_answer_and_retry_replaces_it(
    store: SessionStore, patient_model: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    chat = replica(store, patient_model)
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    answer = Streaming(chat, "first question")
    await until(lambda: answer.seen, what="a delta")
    assert await chat.stop_answer(answer.session_id) is True
    await answer.stopped()
    shown = "".join(answer.seen)
    gate.set()

    async with chat.turn("second question", user_id=ANA) as turn:
        assert "".join([d async for d in turn.deltas()]) == "echo: second question"
    sent = fake_openrouter.requests[-1].body["messages"]
    assert {"role": "assistant", "content": shown} in sent

    async with chat.retry(user_id=ANA) as retried:
        again = "".join([d async for d in retried.deltas()])
    assert again == "echo: second question"
    assert await conversation(store) == [
        ("user", "first question", False),
        ("assistant", shown, True),
        ("user", "second question", False),
        ("assistant", again, False),
    ]
    # /retry of a stopped answer replaces it, unmarked.
    fake_openrouter.pause(gate := asyncio.Event(), after_deltas=1)
    answer = Streaming(chat, "third")
    await until(lambda: answer.seen, what="a delta")
    assert await chat.stop_answer(answer.session_id) is True
    await answer.stopped()
    gate.set()
    async with chat.retry(user_id=ANA) as retried:
        third = "".join([d async for d in retried.deltas()])
    assert (await conversation(store))[-2:] == [
        ("user", "third", False),
        ("assistant", third, False),
    ]


async def test_a_stop_before_the_first_word_stores_nothing_and_keeps_the_question(
    store: SessionStore,
    patient_model: OpenRouterClient,
    fake_openrouter: FakeOpenRouter,
    redis_client: aioredis.Redis,
):
    chat = replica(store, patient_model)
    gate = asyncio.Event()
    fake_openrouter.hold(gate)
    answer = Streaming(chat, "are you there?")
    await until(lambda: answer.turn is not None and fake_openrouter.requests, what="the request")

    assert await replica(store, patient_model).stop_answer(answer.session_id) is True
    stopped = await answer.stopped()
    gate.set()

    assert stopped.partial_text == ""
    assert await conversation(store) == [("user", "are you there?", False)]
    assert not await redis_client.exists(session_key(answer.session_id, ":lock"))
    async with chat.retry(user_id=ANA) as retried:
        assert "".join([d async for d in retried.deltas()]) == "echo: are you there?"


async def test_with_no_answer_being_written_a_stop_says_so_and_changes_nothing(
    store: SessionStore, patient_model: OpenRouterClient, redis_client: aioredis.Redis
):
    chat = replica(store, patient_model)
    async with chat.turn("hello", user_id=ANA) as turn:
        assert "".join([d async for d in turn.deltas()]) == "echo: hello"
    session_id = turn.session.id

    assert await chat.stop_answer(session_id, owner=ANA) is False
    assert not await redis_client.exists(session_key(session_id, ":stop"))
    async with chat.turn("again", user_id=ANA) as turn:  # the next turn is not stopped
        assert "".join([d async for d in turn.deltas()]) == "echo: again"
    assert [m[2] for m in await conversation(store)] == [False] * 4


async def test_nobody_stops_another_persons_answer(
    store: SessionStore, patient_model: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    chat = replica(store, patient_model)
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    answer = Streaming(chat, "mine")
    await until(lambda: answer.seen, what="a delta")

    with pytest.raises(SessionNotFound):
        await chat.stop_answer(answer.session_id, owner=BOB)
    gate.set()
    assert await answer.task == "echo: mine"
    assert await conversation(store) == [
        ("user", "mine", False),
        ("assistant", "echo: mine", False),
    ]


class PollCountingStore(SessionStore):
    """The real store, counting how often the turns' replica asked about stop marks."""

    polls = 0

    async def stop_marks(self, turns: Sequence[tuple[str, str]]) -> list[bool]:
        self.polls += 1
        return await super().stop_marks(turns)


async def test_a_stop_mark_left_for_a_turn_that_ended_never_stops_the_next_one(
    redis_client: aioredis.Redis,
    store: SessionStore,
    patient_model: OpenRouterClient,
    fake_openrouter: FakeOpenRouter,
):
    """The mark names the turn it was for: one that ended before its mark was read (a stop that
    came as the answer completed) is forgotten, not applied to the next answer."""
    counting = PollCountingStore(redis_client, store.limits)
    chat = replica(counting, patient_model)
    async with chat.turn("one", user_id=ANA) as first:
        assert "".join([d async for d in first.deltas()]) == "echo: one"
    mark = session_key(first.session.id, ":stop")
    await redis_client.set(mark, first.lock_token, px=60_000)  # as request_stop.lua leaves it

    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    answer = Streaming(chat, "two")
    await until(lambda: answer.seen, what="a delta")
    polls = counting.polls
    await until(lambda: counting.polls >= polls + 2, what="two polls while the answer is held")
    gate.set()
    assert await answer.task == "echo: two"


async def test_many_answers_at_once_each_stop_alone(
    store: SessionStore, patient_model: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    """Twelve people's answers on one replica, stopped from another: the six asked stop, the
    other six are written whole."""
    writing, elsewhere = replica(store, patient_model), replica(store, patient_model)
    gate = asyncio.Event()
    people = [f"telegram:{100 + n}" for n in range(12)]
    fake_openrouter.pause(gate, after_deltas=1, times=len(people))
    answers = [Streaming(writing, f"question {n}", user) for n, user in enumerate(people)]
    await until(lambda: all(a.seen for a in answers), what="a delta of every answer")

    asked = zip(answers[::2], people[::2], strict=True)
    stops = [elsewhere.stop_answer(answer.session_id, owner=user) for answer, user in asked]
    assert await asyncio.gather(*stops) == [True] * 6
    for stopped in answers[::2]:
        await stopped.stopped()
    gate.set()
    for whole, n in zip(answers[1::2], range(1, 12, 2), strict=True):
        assert await whole.task == f"echo: question {n}"
    for n, user in enumerate(people):
        kept = await conversation(store, user)
        assert kept[1][2] is (n % 2 == 0), (user, kept)


async def test_the_stop_command_stops_the_active_sessions_answer_and_history_shows_the_mark(
    store: SessionStore, patient_model: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    commands = CommandHandler(replica(store, patient_model))
    nothing = await commands.handle(ANA, "/stop")
    assert nothing == Reply(text("en", "nothing_to_stop"))

    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    outcome = await commands.handle(ANA, "a question")
    assert isinstance(outcome, TurnReply)
    seen: list[str] = []

    async def stream() -> None:
        async with outcome.turn as turn:
            async for delta in turn.deltas():
                seen.append(delta)

    task = asyncio.create_task(stream())
    await until(lambda: seen, what="a delta")
    assert await commands.handle(ANA, "/stop") == Reply(text("en", "stop_done"))
    with pytest.raises(TurnStopped):
        await task
    gate.set()

    history = await commands.handle(ANA, "/history")
    assert isinstance(history, Reply)
    assert history.text.endswith(f"{''.join(seen)} {text('en', 'answer_stopped')}")
    exported = await commands.handle(ANA, "/export")
    assert isinstance(exported, FileReply)
    assert f"· {text('en', 'answer_stopped')}\n\n{''.join(seen)}\n" in exported.content.decode()
