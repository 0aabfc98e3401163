"""Hypothesis against the command parser: whatever a user types, `CommandHandler.handle` answers.

Every front hands `CommandHandler.handle(user_id, text, locale=...)` what a user typed, so its
contract (core/commands.py) is what is proven here, under generated input: random Unicode,
known commands (any case, `@botname` suffixes, odd separators) followed by hostile arguments
(huge and negative numbers, digits of other scripts, control characters, NUL, bidi marks,
strings past every limit, session ids of the user and of another user).

Each example is a short conversation on an emptied Redis, run on the real store and the fake
OpenRouter, with low limits so that the limit paths are reached too. After every message:

- `handle` returned a `Reply`, a `FileReply` or a `TurnReply`; it never raised;
- a `TurnReply` could be streamed to its end, or failed with a `ChatbridgeError` only;
- an export's file name is a plain file name (the terminal writes it to disk);
- every key in Redis is one docs/data-model.md describes, of its type, with an expiry, under
  the tag of the user it belongs to, and every session and message in it is well formed;
- the session of another user (`discord:42`, while `telegram:42` types) is untouched.

It found three bugs, now fixed, each pinned by a focused test below: numbers `int()` cannot
read ('²', 4301 digits) crashed `handle`; so did lone surrogates (undecodable terminal bytes);
and a `/retry` before any message created a session that never expired.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.commands import (
    COMMANDS,
    MODEL_ID_PATTERN,
    TITLE_MAX_CHARS,
    CommandHandler,
    FileReply,
    Reply,
    TurnReply,
)
from core.conversation import Role
from core.errors import ChatbridgeError
from core.sessions.codec import TOKENS_UNIT
from core.sessions.keys import session_key, user_tag
from core.sessions.limits import MAX_SYSTEM_PROMPT_LENGTH, SessionLimits
from core.sessions.store import SessionStore
from core.storage.connection import RedisClient
from core.tokens import count_tokens

EXAMPLES = 200
LIMITS = SessionLimits(
    max_sessions_per_user=3,
    max_messages_per_session=6,
    max_message_length=200,
    rate_limit_messages=4,
)
VICTIM = "discord:42"
# The same number on another front, and the user ids the other fronts build.
USERS = ("telegram:42", "cli:ana", "discord:1300000000000000101", "telegram:-1001234567890")
EVERYONE = (*USERS, VICTIM)
VICTIM_NOTE = "the victim's private note"
COMMAND_NAMES = sorted(COMMANDS)  # every command the handler knows: /new, /sessions, ...
# Placeholders replaced when the conversation runs: session ids only known by then.
VICTIMS_SESSION = "<victim-session>"
OWN_SESSION = "<own-session>"
TRICKY_PIECES = (
    "\x00", "\u200f", "\u202e", "\u2066", "\u200b", "\ufeff", "\r\n", "\x1b[31m", "\x7f",
    "\u0085", "\u2028", "confirm", "-1", "0", "00", "+1", "1e9", "1_000", "²", "\u0661", "٣",
    "①", "Ⅻ", "\U0001d7d7", "{}", "{title}", "%s", "../../etc/passwd", "C:\\con", "@", "/", "//",
    "*bold*", "<b>", "```",
    "caf\udce9",  # a lone surrogate: Python's stdin for a non-UTF-8 byte under the C locale
)  # fmt: skip

# What docs/data-model.md lists, "user" and "tag" to be checked against each other.
USER_KEY_TYPES = {
    re.compile(r"user:sessions:\{(?P<tag>[0-9a-f]{4})\}:(?P<user>.+)", re.DOTALL): "zset",
    re.compile(r"user:turns:\{(?P<tag>[0-9a-f]{4})\}:(?P<user>.+)", re.DOTALL): "zset",
    re.compile(r"user:tokens:[0-9]+:\{(?P<tag>[0-9a-f]{4})\}:(?P<user>.+)", re.DOTALL): "string",
    re.compile(r"user:state:\{(?P<tag>[0-9a-f]{4})\}:(?P<user>.+)", re.DOTALL): "hash",
    re.compile(r"user:seen:\{(?P<tag>[0-9a-f]{4})\}:(?P<user>.+)", re.DOTALL): "string",
    re.compile(r"user:usage:[0-9]+:\{(?P<tag>[0-9a-f]{4})\}:(?P<user>.+)", re.DOTALL): "hash",
}
SESSION_KEY = re.compile(r"^session:\{(?P<tag>[0-9a-f]{4})\}:(?P<sid>[0-9a-f]{32})(?P<suffix>.*)$")
SESSION_SUFFIX_TYPES = {"": "hash", ":messages": "list", ":lock": "string"}
STATS_KEY = re.compile(r"^stats:\{chatbridge-stats\}:active-sessions:\d+$")
# What a write call did, kept a minute for a repeat of it (a turn's record under its token).
CALL_KEY = re.compile(r"^call:\{(?P<tag>[0-9a-f]{4})\}:[0-9a-f]{24,32}$")
SESSION_FIELDS = {"userId", "title", "model", "createdAt", "updatedAt", "seq"}
# What a reply is left to tell, or has told (docs/data-model.md, "Notices").
NOTICE_FIELDS = {"tellExpired": str.isdigit, "toldContextLoss": "1".__eq__}
# A session's own system prompt (/persona): never empty, never over its limit.
NOTICE_FIELDS["systemPrompt"] = lambda prompt: 0 < len(prompt) <= MAX_SYSTEM_PROMPT_LENGTH
NOTICE_FIELDS["systemPromptTokens"] = str.isdigit  # written with it: what it takes
# What its answers that name no model were given by (docs/data-model.md, "Messages"): a model
# id, set by its first message.
NOTICE_FIELDS["entryModel"] = lambda model: MODEL_ID_PATTERN.match(model) is not None
ROLE_NUMBERS = {0, 1, 2, 3}  # codec.py: user, answer, system, stopped answer
PLAIN_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# --- what users type ---------------------------------------------------------------------------


def weighted(*choices: tuple[int, st.SearchStrategy[str]]) -> st.SearchStrategy[str]:
    """One of the strategies, each drawn `weight` times as often as a strategy of weight 1."""
    return st.sampled_from([s for weight, s in choices for _ in range(weight)]).flatmap(
        lambda strategy: strategy
    )


def numbers() -> st.SearchStrategy[str]:
    """Numbers as typed: small, negative, huge (past int()'s 4300 digits), other scripts' digits."""
    return weighted(
        (3, st.integers(min_value=-1, max_value=6).map(str)),
        (1, st.integers(min_value=-(10**30), max_value=10**30).map(str)),
        (1, st.integers(min_value=4290, max_value=4400).map(lambda digits: "9" * digits)),
        (1, st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=4)),
    )


def arguments() -> st.SearchStrategy[str]:
    one = weighted(
        (2, st.text(max_size=30)),
        (3, numbers()),
        (2, st.sampled_from(TRICKY_PIECES)),
        (2, st.sampled_from([VICTIMS_SESSION, OWN_SESSION])),
        (1, st.from_regex(r"[0-9a-f]{32}", fullmatch=True)),
        (1, st.from_regex(r"[A-Za-z0-9][\w.\-]{0,12}/[\w.:\-]{1,12}", fullmatch=True)),  # models
        (1, st.integers(min_value=90, max_value=260).map(lambda n: "x" * n)),  # the limits
    )
    return st.lists(one, max_size=3).flatmap(
        lambda parts: st.sampled_from([" ", "  ", "\n", "\t"]).map(lambda sep: sep.join(parts))
    )


def commands_typed() -> st.SearchStrategy[str]:
    """A known command, in any case, maybe `@botname`, then arguments; or a confirmed delete."""
    name = st.sampled_from(["new", "new", *COMMAND_NAMES]).flatmap(
        lambda n: st.sampled_from([n, n, n.upper(), n.capitalize()])
    )
    mention = weighted(
        (4, st.just("")),
        (1, st.sampled_from(["@chatbridge_bot", "@", "@x\u200f"])),
        (1, st.text(max_size=8).map(lambda t: "@" + t)),
    )
    separator = st.sampled_from([" ", " ", " ", " ", "", "\n", "\t", "\u00a0", "\x00"])
    typed = st.builds(
        lambda lead, n, m, sep, args: f"{lead}/{n}{m}{sep}{args}",
        st.sampled_from(["", "", " ", "\n"]),
        name,
        mention,
        separator,
        arguments(),
    )
    target = st.sampled_from([OWN_SESSION, VICTIMS_SESSION, "1", "2", "0"])
    return weighted((4, typed), (1, target.map(lambda t: f"/delete {t} confirm")))


def anything_typed() -> st.SearchStrategy[str]:
    return weighted(
        (6, commands_typed()),
        (2, st.text(max_size=60)),
        (1, st.text(max_size=10).map(lambda t: "/" + t)),
        (1, st.integers(min_value=195, max_value=205).map(lambda n: "é" * n)),  # the length limit
        (1, st.lists(st.sampled_from(TRICKY_PIECES), min_size=1, max_size=4).map("".join)),
    )


@dataclass(frozen=True)
class Said:
    user_id: str
    text: str
    locale: str


def messages_said() -> st.SearchStrategy[Said]:
    locale = st.sampled_from(["en", "pt-BR", "pt_br", "de", ""]) | st.text(max_size=6)
    # Mostly one user, so that conversations reach their sessions' limits.
    user = st.sampled_from([USERS[0], USERS[0], USERS[0], *USERS])
    return st.builds(Said, user, anything_typed(), locale)


# --- the checks --------------------------------------------------------------------------------


@pytest.fixture
def limits() -> SessionLimits:
    """Low limits (overriding tests/conftest.py's): a few messages reach every one of them."""
    return LIMITS


async def victims_session(store: SessionStore) -> str:
    session = await store.create_session(VICTIM, title="Private", default_model="test/model")
    await store.append_message(session.id, Role.USER, VICTIM_NOTE, owner=VICTIM)
    return session.id


async def snapshot(redis_client: RedisClient, session_id: str) -> tuple[Any, ...]:
    fields = await redis_client.hgetall(session_key(session_id))
    messages = await redis_client.lrange(session_key(session_id, ":messages"), 0, -1)
    return fields, messages


def with_sessions(typed: str, victims: str, own: str) -> str:
    return typed.replace(VICTIMS_SESSION, victims).replace(OWN_SESSION, own)


async def own_session_id(store: SessionStore, user_id: str) -> str:
    listing = await store.list_sessions(user_id)
    return listing.sessions[-1].id if listing.sessions else user_tag(user_id) + "0" * 28


async def consume(outcome: TurnReply) -> None:
    """Stream the turn to its end; a ChatbridgeError is a refusal the front shows."""
    try:
        async with outcome.turn as turn:
            async for piece in turn.deltas():
                assert isinstance(piece, str)
    except ChatbridgeError:
        pass


def check_outcome(outcome: object, said: Said) -> None:
    assert isinstance(outcome, Reply | FileReply | TurnReply), (said, outcome)
    if isinstance(outcome, Reply):
        assert isinstance(outcome.text, str), said
        assert outcome.text.strip(), said
    if isinstance(outcome, FileReply):
        assert PLAIN_FILE_NAME.match(outcome.filename), (said, outcome.filename)
        assert outcome.content, said


async def key_problems(redis_client: RedisClient) -> list[str]:
    """Every key that docs/data-model.md would not describe, said why."""
    keys = [key async for key in redis_client.scan_iter(count=1000)]
    async with redis_client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.type(key)
            pipe.pttl(key)
        answers = await pipe.execute()
    problems = []
    for key, kind, ttl in zip(keys, answers[::2], answers[1::2], strict=True):
        expected = expected_type(key)
        if expected is None:
            problems.append(f"{key!r} is no key docs/data-model.md describes, or has a wrong tag")
        elif kind != expected:
            problems.append(f"{key!r} is a {kind}, not a {expected}")
        if ttl < 0:
            problems.append(f"{key!r} has no expiry")
        if kind == "hash" and key.startswith("session:"):
            problems += session_problems(key, await redis_client.hgetall(key))
        if kind == "list":
            problems += message_problems(key, await redis_client.lrange(key, 0, -1))
    return problems


def expected_type(key: str) -> str | None:
    """The type docs/data-model.md gives a key of that name, under the right tag; else None."""
    if STATS_KEY.match(key):
        return "string"
    if (found := CALL_KEY.match(key)) and found["tag"] in {user_tag(user) for user in EVERYONE}:
        return "hash"
    if (found := SESSION_KEY.match(key)) and found["sid"].startswith(found["tag"]):
        return SESSION_SUFFIX_TYPES.get(found["suffix"])
    for pattern, kind in USER_KEY_TYPES.items():
        found = pattern.fullmatch(key)
        if found and found["user"] in EVERYONE and user_tag(found["user"]) == found["tag"]:
            return kind
    return None


def session_problems(key: str, fields: dict[str, str]) -> list[str]:
    problems = []
    if set(fields) - NOTICE_FIELDS.keys() != SESSION_FIELDS:
        problems.append(f"{key!r} has the fields {sorted(fields)}")
    for name, is_valid in NOTICE_FIELDS.items():
        if name in fields and not is_valid(fields[name]):
            problems.append(f"{key!r}: {name} is {fields[name]!r}")
    owner = fields.get("userId", "")
    if owner not in EVERYONE or not key.startswith(f"session:{{{user_tag(owner)}}}:"):
        problems.append(f"{key!r} belongs to {owner!r}")
    if len(fields.get("title", "")) > TITLE_MAX_CHARS:
        problems.append(f"{key!r} has a title of {len(fields['title'])} characters")
    for name in ("createdAt", "updatedAt", "seq"):
        if not fields.get(name, "").isdigit():
            problems.append(f"{key!r}: {name} is {fields.get(name)!r}")
    return problems


def message_problems(key: str, entries: list[str]) -> list[str]:
    problems = []
    if len(entries) > LIMITS.max_messages_per_session:
        problems.append(f"{key!r} holds {len(entries)} messages")
    for raw in entries:
        entry = json.loads(raw)
        is_well_formed = (
            isinstance(entry, list)
            and 4 <= len(entry) <= 9
            and isinstance(entry[0], int)
            and isinstance(entry[1], int)
            and entry[1] % TOKENS_UNIT in ROLE_NUMBERS
            and isinstance(entry[2], int)
            and isinstance(entry[3], str)
            # The kind stores the content's tokens (codec.py): what sizes every context.
            and entry[1] // TOKENS_UNIT == count_tokens(entry[3])
        )
        if not is_well_formed:
            problems.append(f"{key!r} holds the entry {raw!r}")
    return problems


# --- what the fuzz found (fixed): each pinned by an example ---------------------------------


@pytest.mark.parametrize(
    "typed",
    ["/history ²", "/switch ①", "/delete ²", "/history " + "9" * 4301],
    ids=["superscript-two", "circled-one", "delete-superscript", "4301-digits"],
)
async def test_a_number_argument_int_cannot_read_is_answered_as_an_invalid_argument(
    commands: CommandHandler, typed: str
) -> None:
    await commands.handle("cli:ana", "/new")

    reply = await commands.handle("cli:ana", typed)

    assert isinstance(reply, Reply)
    assert reply.is_error


@pytest.mark.parametrize("typed", ["/new caf\udce9", "caf\udce9"], ids=["title", "message"])
async def test_text_with_a_lone_surrogate_is_refused_not_raised(
    commands: CommandHandler, typed: str
) -> None:
    outcome = await commands.handle("cli:ana", typed)

    if isinstance(outcome, TurnReply):
        await consume(outcome)
    else:
        assert isinstance(outcome, Reply)


async def test_a_retry_before_any_message_leaves_no_key_without_an_expiry(
    commands: CommandHandler, redis_client: RedisClient
) -> None:
    outcome = await commands.handle("telegram:42", "/retry")
    assert isinstance(outcome, TurnReply)
    await consume(outcome)

    keys = [key async for key in redis_client.scan_iter()]
    assert [key for key in keys if await redis_client.pttl(key) < 0] == []


# --- the property ------------------------------------------------------------------------------


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    # The fixtures are the store and the model client; each example empties Redis itself.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(conversation=st.lists(messages_said(), min_size=1, max_size=10))
@example(conversation=[Said("telegram:42", f"/delete {VICTIMS_SESSION} confirm", "en")])
@example(conversation=[Said("telegram:42", f"/switch {VICTIMS_SESSION}", "en")])
# What it found once, kept as examples.
@example(conversation=[Said("cli:ana", "/history " + "9" * 4301, "en")])
@example(conversation=[Said("cli:ana", "caf\udce9", "en")])
@example(conversation=[Said("telegram:42", "/retry", "en")])
async def test_whatever_is_typed_is_answered_and_leaves_only_documented_keys(
    commands: CommandHandler, redis_client: RedisClient, conversation: list[Said]
) -> None:
    await redis_client.flushdb()
    store = commands.store
    victims = await victims_session(store)
    before = await snapshot(redis_client, victims)

    for said in conversation:
        typed = with_sessions(said.text, victims, await own_session_id(store, said.user_id))
        outcome = await commands.handle(said.user_id, typed, locale=said.locale)
        check_outcome(outcome, said)
        if isinstance(outcome, TurnReply):
            await consume(outcome)
        assert await key_problems(redis_client) == [], said
        assert await snapshot(redis_client, victims) == before, said
