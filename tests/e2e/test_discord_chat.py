"""The Discord front's plain chat end to end: `python -m bots` as a child process on the strict
fake Discord (REST and gateway), answering with the fake OpenRouter, sessions in a real Redis.

The tests play Discord users (`Person`) and read what they would see. Nothing waits on the wall
clock: `wait_for` polls with a bound, and "nothing happened" is proved with a barrier: a later
message from the same user in the same channel has been answered (the bot handles one user's
messages in a channel in order, and decides synchronously which messages are for it). Pacing is
checked from the times the fake recorded. Slash commands are covered in
`test_discord_commands.py`; here they only serve as a user would use them (`/history`, `/retry`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from core.conversation import Notice
from core.errors import ModelRateLimited, ModelUnavailable, TurnTimeout
from core.messages import ENGLISH, describe, help_text, notice_text, text
from tests.attachment_files import image_file
from tests.e2e.conftest import Service
from tests.e2e.discord_support import CHANNEL, FOOTER_MARK, GUILD, Person, StartBot, answer_text
from tests.fakes.discord_gateway import MESSAGE_CONTENT_INTENT
from tests.fakes.discord_payloads import StoredMessage, user_json
from tests.fakes.discord_server import DEFAULT_USER_ID, FakeDiscord
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.redis_expiry import let_time_pass

DEFAULT_MODEL = "test/default-model"
EDIT_INTERVAL = 0.3
PACING_TOLERANCE = 0.8  # consecutive edits at least this share of the interval apart
DISCORD_LIMIT = 2000
PREVIEW_SUFFIX = " …"
WAIT_SECONDS = 15.0
OPEN_CHANNEL = 1_300_000_000_000_002_002  # in DISCORD_CHANNEL_IDS where a test says so
BOB_ID = DEFAULT_USER_ID + 1
OTHER_BOT_ID = DEFAULT_USER_ID + 2
# Discord puts a guild on shard (guild_id >> 22) % shard_count: GUILD is on shard 0 of 2.
SHARD_1_GUILD = GUILD + (1 << 22)
SHARD_1_CHANNEL = 1_300_000_000_000_002_101
EDIT_ROUTE = r"/channels/\d+/messages/\d+"
POST_ROUTE = r"/channels/\d+/messages"
T = TypeVar("T")


# --- helpers ----------------------------------------------------------------------------------


def bot_messages(person: Person) -> list[StoredMessage]:
    """The bot's messages where `person` talks (none yet if their DM channel is not open)."""
    if person.guild_id is None and person.fake.dm_channel_of(person.user_id) is None:
        return []
    return person.fake.messages(person.where)


async def until(
    person: Person, found: Callable[[], T | None], *, what: str, service: Service | None = None
) -> T:
    """`found()` once truthy; else fail showing what the bot shows (and the errors it logged).

    With `service`, a `discord.handler_failed` in its log ends the wait at once."""

    def errors() -> list[str]:
        lines = service.stderr_lines if service is not None else []
        return [line[-400:] for line in lines if '"level": "error"' in line]

    def failed() -> bool:
        return service is not None and bool(service.events("discord.handler_failed"))

    with contextlib.suppress(TimeoutError):
        await person.fake.wait_for(lambda: found() or failed(), WAIT_SECONDS)
    if result := found():
        return result
    shown = [m.history for m in bot_messages(person)]
    pytest.fail(f"no {what}; the bot shows {shown!r}; errors logged: {errors()}")


async def asks(
    person: Person, said: str, *, service: Service | None = None, **options: Any
) -> list[StoredMessage]:
    """Post a message; the bot's answer to it (all its parts), once finished (footer shown)."""
    before = len(bot_messages(person))
    person.posts(said, **options)

    def answer() -> list[StoredMessage]:
        shown = bot_messages(person)[before:]
        return shown if shown and FOOTER_MARK in shown[-1].content else []

    return await until(person, answer, what=f"answer to {said[:40]!r}", service=service)


async def finished_answers(
    person: Person, count: int, service: Service | None = None
) -> list[StoredMessage]:
    """The bot's `count` messages where `person` talks, once each shows its footer."""

    def done() -> list[StoredMessage]:
        shown = bot_messages(person)
        finished = len(shown) == count and all(FOOTER_MARK in m.content for m in shown)
        return shown if finished else []

    return await until(person, done, what=f"{count} finished answers", service=service)


async def first_reply(person: Person, reads: Callable[[str], bool]) -> StoredMessage:
    """The bot's first message where `person` talks, once `reads(its content)` holds."""
    return await until(
        person,
        lambda: next((m for m in bot_messages(person) if reads(m.content)), None),
        what="such message",
    )


def reference_id(message: StoredMessage) -> int | None:
    """The id of the message this one replies to."""
    return message.reference.id if message.reference is not None else None


def footer_for(request_body: dict[str, Any], reply: str) -> str:
    """The footer the user should see: the model, and the usage the fake reported for this
    request (the fake counts words as tokens)."""
    prompt = sum(len(str(m["content"]).split()) for m in request_body["messages"])
    return f"-# {request_body['model']} · {prompt} → {len(reply.split())} tokens"


def said_to_model(fake_openrouter: FakeOpenRouter) -> list[str]:
    """The last user message of every model request, in order."""
    return [r.body["messages"][-1]["content"] for r in fake_openrouter.requests]


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def trickle(monkeypatch: pytest.MonkeyPatch, fake: FakeOpenRouter, seconds: float) -> None:
    """The fake model sends each delta `seconds` after the previous one, as real models do."""
    send_delta = fake._send_delta

    async def slowly(response: web.StreamResponse, model: str, piece: str) -> None:
        await asyncio.sleep(seconds)
        await send_delta(response, model, piece)

    monkeypatch.setattr(fake, "_send_delta", slowly)


def code_lines_of(part: str) -> list[str]:
    """The lines inside the part's fenced blocks; fails if a fence is left open."""
    inside, found = False, []
    for line in part.split("\n"):
        if line.startswith("```"):
            inside = not inside
        elif inside:
            found.append(line)
    assert not inside, f"a part leaves a code block open:\n{part}"
    return found


# --- the service ------------------------------------------------------------------------------


@pytest.fixture
def start_bot(start_discord_service: StartBot) -> StartBot:
    """Start the service on the fakes; keyword arguments are extra environment variables."""

    async def start(**variables: str) -> Service:
        defaults = {"DEFAULT_MODEL": DEFAULT_MODEL, "DISCORD_EDIT_INTERVAL": str(EDIT_INTERVAL)}
        return await start_discord_service(**(defaults | variables))

    return start


@pytest.fixture
def guild(fake_discord: FakeDiscord) -> None:
    """A guild with two channels and alice and bob in it (before the bot connects)."""
    bob = {"id": BOB_ID, "username": "bob"}
    fake_discord.add_guild(GUILD, channels=[CHANNEL, OPEN_CHANNEL], members=[DEFAULT_USER_ID, bob])


@pytest.fixture
def alice(fake_discord: FakeDiscord) -> Person:
    """Alice in her DMs with the bot."""
    return Person(fake_discord)


@pytest.fixture
def alice_in_guild(fake_discord: FakeDiscord, guild: None) -> Person:
    return Person(fake_discord, guild_id=GUILD, channel_id=CHANNEL)


@pytest.fixture
def bob_in_guild(fake_discord: FakeDiscord, guild: None) -> Person:
    return Person(fake_discord, user_id=BOB_ID, username="bob", guild_id=GUILD, channel_id=CHANNEL)


# --- 1. direct messages -----------------------------------------------------------------------


async def test_a_dm_is_answered_as_a_reply_after_typing_with_a_footer_and_the_turn_is_kept(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot()
    # The user waits longer than TYPING_AFTER_SECONDS (0.5): they should see "typing…".
    fake_openrouter.slow_first_token(0.8)

    (answer,) = await asks(alice, "when is high tide?", service=service)

    dm, reply = alice.where, "echo: when is high tide?"
    (asked,) = [m for m in alice.fake.messages(dm, include_user=True) if not m.is_from_bot]
    assert reference_id(answer) == asked.id
    typing = alice.fake.calls_to("POST", rf"/channels/{dm}/typing")
    sends = alice.fake.calls_to("POST", rf"/channels/{dm}/messages")
    assert typing
    assert typing[0].at < sends[0].at
    request = fake_openrouter.requests[0].body
    assert request["model"] == DEFAULT_MODEL
    assert request["messages"][-1] == {"role": "user", "content": "when is high tide?"}
    assert answer.content == reply + "\n" + footer_for(request, reply)

    history = await alice.command("history")
    you, assistant = text(ENGLISH, "you"), text(ENGLISH, "assistant")
    assert history.content.endswith(f"*{you}:* when is high tide?\n\n*{assistant}:* {reply}")


async def test_two_dms_sent_back_to_back_are_answered_in_order_with_the_first_in_context(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot()
    fake_openrouter.slow_first_token(0.5)  # the first answer is slow: the second must wait

    first = alice.posts("first")
    second = alice.posts("second")
    answers = await finished_answers(alice, 2, service)

    assert [answer_text([m]) for m in answers] == ["echo: first", "echo: second"]
    assert [reference_id(m) for m in answers] == [int(first["id"]), int(second["id"])]
    assert answers[0].versions[-1].at < answers[1].versions[0].at  # one after the other
    assert fake_openrouter.requests[1].body["messages"][-3:] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": "second"},
    ]


# --- 2. guild channels ------------------------------------------------------------------------


async def test_in_a_guild_only_mentions_replies_and_messages_in_its_channels_are_answered(
    start_bot: StartBot, alice_in_guild: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot(DISCORD_CHANNEL_IDS=str(OPEN_CHANNEL))
    in_open_channel = Person(alice_in_guild.fake, guild_id=GUILD, channel_id=OPEN_CHANNEL)

    alice_in_guild.posts("just chatting among humans")
    mentioned = await asks(alice_in_guild, "what are tides?", mentions_bot=True)  # the barrier

    assert bot_messages(alice_in_guild) == mentioned  # nothing said to the chatter
    assert said_to_model(fake_openrouter) == ["what are tides?"]  # the mention is stripped
    assert answer_text(mentioned) == "echo: what are tides?"

    replied = await asks(alice_in_guild, "and currents?", reply_to=mentioned[0].id)
    # A reply whose ping the user switched off mentions nobody; it is still a reply to the bot.
    unpinged = await asks(alice_in_guild, "and waves?", reply_to=mentioned[0].id, reply_pings=False)
    unaddressed = await asks(in_open_channel, "no mention here")

    assert answer_text(replied) == "echo: and currents?"
    assert answer_text(unpinged) == "echo: and waves?"
    assert answer_text(unaddressed) == "echo: no mention here"
    assert said_to_model(fake_openrouter)[1:] == ["and currents?", "and waves?", "no mention here"]


async def test_a_bare_mention_gets_the_help(
    start_bot: StartBot, alice_in_guild: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()

    posted = alice_in_guild.posts("", mentions_bot=True)
    helped = await first_reply(alice_in_guild, bool)

    assert helped.content == help_text(ENGLISH)
    assert reference_id(helped) == int(posted["id"])
    assert fake_openrouter.requests == []


async def test_a_mention_of_the_bots_own_role_is_a_mention_of_the_bot(
    start_bot: StartBot, alice_in_guild: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()

    posted = alice_in_guild.posts("what are tides?", mentions_bot_role=True)
    answer = await until(
        alice_in_guild,
        lambda: [m for m in bot_messages(alice_in_guild) if FOOTER_MARK in m.content],
        what="an answer to the role mention",
    )

    assert answer_text(answer) == "echo: what are tides?"
    assert reference_id(answer[0]) == int(posted["id"])
    assert said_to_model(fake_openrouter) == ["what are tides?"]  # the role mention is stripped


async def test_messages_from_other_bots_are_ignored_even_when_they_mention_the_bot(
    start_bot: StartBot, alice_in_guild: Person, fake_openrouter: FakeOpenRouter
) -> None:
    fake = alice_in_guild.fake
    fake.users[OTHER_BOT_ID] = user_json(OTHER_BOT_ID, "otherbot", is_bot=True)
    await start_bot(DISCORD_CHANNEL_IDS=str(OPEN_CHANNEL))
    other_bot = Person(fake, OTHER_BOT_ID, "otherbot", guild_id=GUILD, channel_id=CHANNEL)
    in_open_channel = Person(
        fake, OTHER_BOT_ID, "otherbot", guild_id=GUILD, channel_id=OPEN_CHANNEL
    )

    other_bot.posts("hello fellow bot", mentions_bot=True)
    in_open_channel.posts("chatter in the open channel")
    # Another user's barrier: the bot decides synchronously, in arrival order, which messages it
    # takes; a taken message from the other bot would have reached the model first.
    answer = await asks(alice_in_guild, "hi", mentions_bot=True)

    assert said_to_model(fake_openrouter) == ["hi"]
    assert fake.messages(CHANNEL) == answer
    assert fake.messages(OPEN_CHANNEL) == []


async def test_two_users_in_one_channel_never_share_a_model_context(
    start_bot: StartBot,
    alice_in_guild: Person,
    bob_in_guild: Person,
    fake_openrouter: FakeOpenRouter,
) -> None:
    await start_bot()

    await asks(alice_in_guild, "my secret is alpha", mentions_bot=True)
    bobs = await asks(bob_in_guild, "what is the secret?", mentions_bot=True)

    assert answer_text(bobs) == "echo: what is the secret?"
    context = fake_openrouter.requests[1].body["messages"]
    assert [m["content"] for m in context if m["role"] != "system"] == ["what is the secret?"]
    assert not any("alpha" in str(m["content"]) for m in context)


# --- 3. streaming and pacing ------------------------------------------------------------------


async def test_a_slow_answer_streams_as_previews_paced_by_the_edit_interval(
    start_bot: StartBot,
    alice: Person,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot()
    reply = " ".join(f"word{n}" for n in range(40))
    fake_openrouter.reply_text = reply
    fake_openrouter.deltas_per_reply = 40
    trickle(monkeypatch, fake_openrouter, 0.03)  # about 1.2 s of deltas

    (answer,) = await asks(alice, "talk")

    previews, last = answer.history[:-1], answer.history[-1]
    assert len(previews) >= 3, answer.history
    assert all(p.endswith(PREVIEW_SUFFIX) for p in previews), previews
    assert all(reply.startswith(p.removesuffix(PREVIEW_SUFFIX)) for p in previews)
    assert last == reply + "\n" + footer_for(fake_openrouter.requests[0].body, reply)
    times = [version.at for version in answer.versions]
    assert min(gaps(times)) >= PACING_TOLERANCE * EDIT_INTERVAL, gaps(times)


async def test_two_answers_streaming_into_one_channel_share_its_pacing(
    start_bot: StartBot,
    alice_in_guild: Person,
    bob_in_guild: Person,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = await start_bot()
    fake_openrouter.reply_text = " ".join(f"word{n}" for n in range(40))
    fake_openrouter.deltas_per_reply = 40
    trickle(monkeypatch, fake_openrouter, 0.03)
    fake = alice_in_guild.fake

    alice_in_guild.posts("talk, alice", mentions_bot=True)
    bob_in_guild.posts("talk, bob", mentions_bot=True)
    await finished_answers(alice_in_guild, 2, service)

    edits = fake.calls_to("PATCH", rf"/channels/{CHANNEL}/messages/\d+")
    assert {c.status for c in edits} == {200}
    assert len({c.path for c in edits}) == 2  # both answers were edited
    times = sorted(c.at for c in edits)
    assert min(gaps(times)) >= PACING_TOLERANCE * EDIT_INTERVAL, gaps(times)


# --- 4. long answers --------------------------------------------------------------------------


async def test_an_answer_over_2000_characters_is_split_at_paragraphs_into_several_messages(
    start_bot: StartBot, alice: Person
) -> None:
    service = await start_bot()
    paragraphs = [
        f"Paragraph {n}. " + " ".join(f"tide{n}x{k}" for k in range(22)) for n in range(18)
    ]
    said = "\n\n".join(paragraphs)  # about 3,800 characters; the echo repeats it
    assert len(said) <= 4000

    parts = await asks(alice, said, service=service)

    assert len(parts) >= 2
    assert all(len(m.content) <= DISCORD_LIMIT for m in parts)
    assert "\n\n".join(m.content for m in parts).split(FOOTER_MARK)[0] == "echo: " + said
    assert all(m.content.startswith("Paragraph ") for m in parts[1:])  # cut between paragraphs
    assert not any(m.content.endswith(PREVIEW_SUFFIX) for m in parts)
    assert [reference_id(m) is not None for m in parts] == [True] + [False] * (len(parts) - 1)


async def test_a_code_block_straddling_the_limit_moves_whole_into_the_next_message(
    start_bot: StartBot, alice: Person
) -> None:
    service = await start_bot()
    intro = "\n\n".join(f"Note {n}: " + "the tide turns twice a day. " * 6 for n in range(9))
    code = [f"level_{n} = tide_height({n}, 'harbour')" for n in range(30)]
    said = intro + "\n\n```python\n" + "\n".join(code) + "\n```\n\nDone."
    assert len("echo: " + intro) < DISCORD_LIMIT < len("echo: " + said) <= 4000

    parts = await asks(alice, said, service=service)

    assert len(parts) >= 2
    assert all(len(m.content) <= DISCORD_LIMIT for m in parts)
    assert [code_lines_of(m.content) for m in parts if code_lines_of(m.content)] == [code]
    assert answer_text(parts).endswith("Done.")


async def test_a_code_block_longer_than_a_message_is_closed_and_reopened_at_each_cut(
    start_bot: StartBot, alice: Person
) -> None:
    service = await start_bot()
    code = [f"value_{n} = compute({n}, 'tide')  # step {n}" for n in range(80)]
    said = "Here is the code:\n\n```python\n" + "\n".join(code) + "\n```\n\nDone."
    assert len(said) <= 4000

    parts = await asks(alice, said, service=service)

    assert all(len(m.content) <= DISCORD_LIMIT for m in parts)
    with_code = [m.content for m in parts if "```" in m.content]
    assert len(with_code) >= 2
    assert all(part.count("```python\n") == 1 for part in with_code)
    assert [line for part in with_code for line in code_lines_of(part)] == code
    assert answer_text(parts).endswith("Done.")


# --- 5. Discord's rate limits and failures ----------------------------------------------------


async def test_rate_limited_edits_do_not_lose_the_final_text(
    start_bot: StartBot,
    alice: Person,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot()
    reply = " ".join(f"word{n}" for n in range(30))
    fake_openrouter.reply_text = reply
    fake_openrouter.deltas_per_reply = 30
    trickle(monkeypatch, fake_openrouter, 0.03)
    alice.fake.rate_limit("PATCH", EDIT_ROUTE, retry_after=0.5, times=2)

    (answer,) = await asks(alice, "talk")

    edits = alice.fake.calls_to("PATCH", EDIT_ROUTE)
    assert [c.status for c in edits].count(429) == 2
    assert edits[-1].status == 200
    assert answer_text([answer]) == reply
    assert len(bot_messages(alice)) == 1


async def test_a_rate_limited_first_message_is_sent_once_after_the_wait(
    start_bot: StartBot, alice: Person
) -> None:
    await start_bot()
    alice.fake.rate_limit("POST", POST_ROUTE, retry_after=0.5)

    (answer,) = await asks(alice, "hello")

    sends = alice.fake.calls_to("POST", POST_ROUTE)
    assert [c.status for c in sends] == [429, 200]
    assert sends[1].at - sends[0].at >= PACING_TOLERANCE * 0.5
    assert answer_text([answer]) == "echo: hello"
    assert len(bot_messages(alice)) == 1


async def test_a_server_error_on_the_final_edit_is_retried_until_the_text_arrives(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot()
    # One preview (the first words, shown FIRST_PREVIEW_AFTER_SECONDS = 0.5 s in), then the rest
    # 0.7 s in, before the next edit slot (0.5 + EDIT_INTERVAL): the final edit is the only edit.
    fake_openrouter.deltas_per_reply = 2
    fake_openrouter.stall(after_deltas=1, seconds=0.7)
    # 503 is not among the statuses discord.py retries itself: the front must.
    alice.fake.fail("PATCH", EDIT_ROUTE, status=503, message="503: Service Unavailable")

    (answer,) = await asks(alice, "hello")

    assert [c.status for c in alice.fake.calls_to("PATCH", EDIT_ROUTE)] == [503, 200]
    assert answer.history[0].endswith(PREVIEW_SUFFIX)
    assert answer_text([answer]) == "echo: hello"
    assert [e["status"] for e in service.events("discord.final_retry")] == [503]


# --- 6. model faults --------------------------------------------------------------------------


async def test_a_cut_stream_shows_the_partial_text_and_the_incomplete_notice(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    fake_openrouter.reply_text = "aaaa bbbb cccc dddd"
    fake_openrouter.deltas_per_reply = 4
    fake_openrouter.cut_stream(after_deltas=2)
    notice = text(ENGLISH, "reply_incomplete")

    alice.posts("talk")
    answer = await first_reply(alice, lambda shown: shown.endswith(notice))

    assert answer.content == "aaaa bbbb \n\n" + notice  # the first two of four deltas
    assert len(bot_messages(alice)) == 1


async def test_an_answer_past_turn_timeout_stays_shown_and_says_it_was_stopped(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot(TURN_TIMEOUT="1")
    fake_openrouter.reply_text = "aaaa bbbb cccc dddd"
    fake_openrouter.keep_alive_forever(after_deltas=2)
    notice = describe(TurnTimeout(seconds=1), ENGLISH)

    alice.posts("talk")
    answer = await first_reply(alice, lambda shown: shown.endswith(notice))

    assert answer.content == "aaaa bbbb \n\n⚠️ " + notice
    assert "/retry" in notice


async def test_an_answer_whose_session_was_taken_over_stays_shown_and_says_it_was_not_saved(
    start_bot: StartBot,
    alice: Person,
    fake_openrouter: FakeOpenRouter,
    redis_client: aioredis.Redis,
) -> None:
    await start_bot()
    fake_openrouter.reply_text = "aaaa bbbb cccc dddd"
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=2)
    notice = text(ENGLISH, "turn_lock_lost")

    alice.posts("talk")
    await until(alice, lambda: fake_openrouter.requests, what="the model asked")
    [lock] = [key async for key in redis_client.scan_iter(match="session:*:lock")]
    await redis_client.set(lock, "a-turn-of-another-replica", px=30_000)  # the lock lapsed
    gate.set()
    answer = await first_reply(alice, lambda shown: shown.endswith(notice))

    assert answer.content == "aaaa bbbb cccc dddd\n\n⚠️ " + notice
    assert "/retry" in notice
    [messages] = [key async for key in redis_client.scan_iter(match="session:*:messages")]
    assert await redis_client.llen(messages) == 1  # the question only


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        pytest.param(
            lambda fake: fake.rate_limit(retry_after=0, times=3),
            describe(ModelRateLimited(retry_after=0.0), ENGLISH),
            id="rate-limited",
        ),
        pytest.param(
            lambda fake: fake.server_error(502, times=3),
            describe(ModelUnavailable(), ENGLISH),
            id="unavailable",
        ),
    ],
)
async def test_a_failing_model_is_explained_and_retry_answers_the_kept_message(
    start_bot: StartBot,
    alice: Person,
    fake_openrouter: FakeOpenRouter,
    fault: Callable[[FakeOpenRouter], object],
    said: str,
) -> None:
    await start_bot()
    fault(fake_openrouter)

    posted = alice.posts("hello")
    failed = await first_reply(alice, bool)
    assert failed.history == [said]
    assert reference_id(failed) == int(posted["id"])

    retried = await alice.command("retry")
    await until(alice, lambda: FOOTER_MARK in retried.content, what="answer to /retry")

    assert answer_text([retried]) == "echo: hello"
    assert said_to_model(fake_openrouter) == ["hello"] * 4  # three failed tries, then /retry


async def test_a_picture_is_read_with_the_text_beside_it_and_a_picture_alone_is_answered_too(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot()
    picture = [("tide.png", image_file("PNG"), "image/png")]

    posted = alice.posts("what is in this picture?", attachments=picture)
    (answer,) = await finished_answers(alice, 1, service)
    alone = alice.posts("", attachments=picture)
    answers = await finished_answers(alice, 2, service)

    assert answer_text([answer]) == "echo: what is in this picture?"
    assert answer_text(answers[1:]) == "echo: "
    assert [reference_id(m) for m in answers] == [int(posted["id"]), int(alone["id"])]
    asked = [r.body["messages"][-1]["content"] for r in fake_openrouter.requests]
    assert [[part["type"] for part in content] for content in asked] == [
        ["text", "image_url"],
        ["image_url"],
    ]
    assert asked[0][0]["text"] == "what is in this picture?"


# --- 7. no pings ------------------------------------------------------------------------------


async def test_an_answer_that_mentions_everyone_or_a_user_pings_nobody(
    start_bot: StartBot, alice_in_guild: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    reply = "Hey @everyone and <@123456789012345678>, look at @here"
    fake_openrouter.reply_text = reply

    answer = await asks(alice_in_guild, "ping them", mentions_bot=True)

    assert answer_text(answer) == reply
    sends = alice_in_guild.fake.calls_to("POST", rf"/channels/{CHANNEL}/messages")
    edits = alice_in_guild.fake.calls_to("PATCH", rf"/channels/{CHANNEL}/messages/\d+")
    assert sends
    for call in sends + edits:
        allowed = call.body["allowed_mentions"]
        assert allowed["parse"] == []
        assert not allowed.get("users")
        assert not allowed.get("roles")


# --- 8. without the Message Content intent ----------------------------------------------------


async def test_without_the_content_intent_the_bot_says_what_to_enable_and_connects_without_it(
    start_bot: StartBot, fake_discord: FakeDiscord, guild: None
) -> None:
    fake_discord.set_privileged_intents(message_content=False)

    service = await start_bot()

    (missing,) = service.events("discord.message_content_intent_missing")
    assert "Message Content Intent" in missing["hint"]
    assert "Developer Portal" in missing["hint"]
    assert 4014 in fake_discord.gateway.close_codes
    assert fake_discord.identifies[0]["intents"] & MESSAGE_CONTENT_INTENT
    assert not fake_discord.identifies[-1]["intents"] & MESSAGE_CONTENT_INTENT
    assert service.events("discord.ready")[0]["message_content"] is False


async def test_without_the_content_intent_dms_mentions_and_commands_work_and_hidden_text_is_ignored(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter, guild: None
) -> None:
    fake = alice.fake
    fake.set_privileged_intents(message_content=False)
    service = await start_bot(DISCORD_CHANNEL_IDS=str(OPEN_CHANNEL))
    in_open_channel = Person(fake, guild_id=GUILD, channel_id=OPEN_CHANNEL)

    dm = await asks(alice, "hello in private")
    in_open_channel.posts("Discord hides this text from the bot")
    mentioned = await asks(in_open_channel, "hello in public", mentions_bot=True)  # the barrier
    helped = await Person(fake, guild_id=GUILD, channel_id=CHANNEL).command("help")

    assert answer_text(dm) == "echo: hello in private"
    assert answer_text(mentioned) == "echo: hello in public"
    assert fake.messages(OPEN_CHANNEL) == mentioned  # the hidden text got no answer
    assert said_to_model(fake_openrouter) == ["hello in private", "hello in public"]
    assert helped.content == help_text(ENGLISH)
    assert service.events("discord.handler_failed") == []


async def test_without_the_content_intent_a_reply_without_ping_is_told_once_why_not_helped(
    start_bot: StartBot, alice_in_guild: Person, fake_openrouter: FakeOpenRouter
) -> None:
    fake = alice_in_guild.fake
    fake.set_privileged_intents(message_content=False)
    service = await start_bot()
    mentioned = await asks(alice_in_guild, "first question", mentions_bot=True)

    first = alice_in_guild.posts("a follow-up", reply_to=mentioned[0].id, reply_pings=False)
    alice_in_guild.posts("another one", reply_to=mentioned[0].id, reply_pings=False)
    await asks(alice_in_guild, "last question", mentions_bot=True)  # the barrier

    shown = bot_messages(alice_in_guild)
    assert len(shown) == 3, [m.history for m in shown]
    notice = shown[1]  # between the two answers
    assert notice.content == text(ENGLISH, "content_hidden")
    assert reference_id(notice) == int(first["id"])
    assert help_text(ENGLISH) not in [m.content for m in shown]
    assert said_to_model(fake_openrouter) == ["first question", "last question"]
    assert len(service.events("discord.message_content_hidden")) == 1


# --- 9. shards and reconnects -----------------------------------------------------------------


async def test_two_shards_identify_each_and_serve_guilds_on_either(
    start_bot: StartBot, fake_discord: FakeDiscord, guild: None
) -> None:
    fake_discord.add_guild(SHARD_1_GUILD, channels=[SHARD_1_CHANNEL], members=[DEFAULT_USER_ID])

    await start_bot(DISCORD_SHARD_COUNT="2")
    on_shard_0 = Person(fake_discord, guild_id=GUILD, channel_id=CHANNEL)
    on_shard_1 = Person(fake_discord, guild_id=SHARD_1_GUILD, channel_id=SHARD_1_CHANNEL)

    assert sorted(identify["shard"] for identify in fake_discord.identifies) == [[0, 2], [1, 2]]
    assert answer_text(await asks(on_shard_0, "hi zero", mentions_bot=True)) == "echo: hi zero"
    assert answer_text(await asks(on_shard_1, "hi one", mentions_bot=True)) == "echo: hi one"


async def test_a_process_given_one_shard_identifies_only_that_shard(
    start_bot: StartBot, fake_discord: FakeDiscord, guild: None
) -> None:
    fake_discord.add_guild(SHARD_1_GUILD, channels=[SHARD_1_CHANNEL], members=[DEFAULT_USER_ID])

    await start_bot(DISCORD_SHARD_COUNT="2", DISCORD_SHARD_IDS="1")
    on_shard_1 = Person(fake_discord, guild_id=SHARD_1_GUILD, channel_id=SHARD_1_CHANNEL)

    assert [identify["shard"] for identify in fake_discord.identifies] == [[1, 2]]
    assert answer_text(await asks(on_shard_1, "hi one", mentions_bot=True)) == "echo: hi one"
    with pytest.raises(RuntimeError, match="no gateway session"):  # shard 0 is another's
        Person(fake_discord, guild_id=GUILD, channel_id=CHANNEL).posts("hi", mentions_bot=True)


async def test_after_the_gateway_drops_the_bot_resumes_and_answers_what_was_sent_meanwhile(
    start_bot: StartBot, alice: Person
) -> None:
    await start_bot()
    await asks(alice, "before")
    (session,) = alice.fake.sessions

    await alice.fake.drop_gateway()
    assert session.connection is None  # what follows is sent while the bot is away
    missed = await asks(alice, "while away")  # replayed on RESUME
    after = await asks(alice, "after")

    assert answer_text(missed) == "echo: while away"
    assert answer_text(after) == "echo: after"
    assert [r["session_id"] for r in alice.fake.gateway.resumes] == [session.session_id]
    assert len(alice.fake.identifies) == 1


# --- 10. what a reply tells besides -----------------------------------------------------------


async def test_notices_go_between_the_answer_and_its_footer_each_once(
    start_bot: StartBot, alice: Person, redis_client: aioredis.Redis
) -> None:
    await start_bot(MAX_MESSAGES_PER_SESSION="2", SUMMARIES="off")
    await asks(alice, "first")
    await let_time_pass(redis_client, 3600)  # SESSION_TTL without messages: it expired

    (new,) = await asks(alice, "back again")
    (trimmed,) = await asks(alice, "next")  # "back again" is trimmed now
    (plain,) = await asks(alice, "and then")

    expired = notice_text(ENGLISH, Notice.PREVIOUS_SESSION_EXPIRED, expired_after=3600)
    lost = notice_text(ENGLISH, Notice.CONTEXT_LOST)
    assert new.content.startswith(f"echo: back again\n\n{expired}{FOOTER_MARK}")
    assert trimmed.content.startswith(f"echo: next\n\n{lost}{FOOTER_MARK}")
    assert answer_text([plain]) == "echo: and then"
