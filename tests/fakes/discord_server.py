"""A strict stand-in for Discord (REST API v10 and the gateway), served on 127.0.0.1.

One aiohttp app answers REST under `/api/v10/...` and the gateway websocket at `/gateway`
(see `discord_gateway`), in Discord's shapes and with Discord's refusals (`discord_payloads`).

Pointing discord.py 2.x at it takes two class attributes, because discord.py has no option
for either: every REST call (webhooks and interaction callbacks included) is built from
`discord.http.Route.BASE`, and a non-sharded `Client` connects to
`DiscordWebSocket.DEFAULT_GATEWAY` without asking `GET /gateway/bot` (an `AutoShardedClient`
without `shard_count` asks `GET /gateway/bot`, and after READY both resume on READY's
`resume_gateway_url`, the fake's gateway again):

    with pointing_discord_py_at(fake_discord):  # sets both, restores them on exit
        client = discord.Client(intents=intents)
        async with client:
            task = asyncio.create_task(client.start(fake_discord.token))

By hand: `discord.http.Route.BASE = fake.api_base_url` and
`discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)`.

Tests play the users and read what they would see:

    fake.add_guild(GUILD, channels=[CHANNEL])            # before the client connects
    fake.user_posts("hi", channel_id=CHANNEL, guild_id=GUILD, mentions_bot=True)
    interaction = fake.user_runs("new", {"title": "Trip"}, guild_id=GUILD)
    record = await fake.wait_for(lambda: fake.responses(interaction["id"]).callback_type)
    assert fake.messages(CHANNEL)[-1].history == ["Thinking…", "Hello!"]

It enforces `Authorization: Bot <token>` (401), message and command limits (400 50035 in
Discord's nested error shape, 50006 for an empty message), unknown channels/messages (10003,
10008), the 3-second answer window of an interaction (`interaction_deadline`; 10062), one
answer per interaction (40060), the 15-minute life of an interaction's token
(`interaction_token_ttl`; then 401 50027 "Invalid Webhook Token"), rate-limit buckets announced
in `X-RateLimit-*` headers (5 messages per 5 s per channel, 50 calls per second elsewhere; a
client that ignores them gets Discord's 429), and injected faults: `fake.rate_limit(...)`,
`fake.fail(...)`, `await fake.drop_gateway()`. Like Discord, it echoes the bot's own messages
as MESSAGE_CREATE/UPDATE, gives the bot a managed role in each guild (`bot_role_id`; users
may mention it, `mention_roles` lists it), and hides content from guild messages that do not
mention the bot (its user) when the session lacks the Message Content intent. Files (multipart
`files[n]` parts, named by the body's `attachments`) become attachments, refused when empty or
over 10 MiB; `fake.files[int(attachment["id"])]` holds what was uploaded. Users' files too
(`user_posts(..., attachments=[(name, bytes, content type)])`, `user_sends_voice_message`), and
`fake.cdn` (`discord_cdn`) serves every one at its attachment's signed `url` and `proxy_url`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import yarl
from aiohttp import web
from discord.gateway import DiscordWebSocket
from discord.http import Route

from tests.fakes.discord_cdn import CdnFile, FakeCdn
from tests.fakes.discord_gateway import (
    DM_MESSAGES_INTENT,
    GUILD_MESSAGES_INTENT,
    GUILDS_INTENT,
    MEMBERS_INTENT,
    MESSAGE_CONTENT_INTENT,
    PRESENCES_INTENT,
    FakeGateway,
    GatewaySession,
    Heartbeat,
)
from tests.fakes.discord_payloads import (
    DEFAULT_PERMISSIONS,
    EPHEMERAL,
    INTERACTION_FLAGS,
    IS_VOICE_MESSAGE,
    LOADING,
    MAX_ATTACHMENTS,
    MENTION,
    ROLE_MENTION,
    SENDABLE_FLAGS,
    ApiError,
    FakeGuild,
    MessageFields,
    MessageVersion,
    NewAttachment,
    Snowflakes,
    StoredMessage,
    Upload,
    attachment_content_type,
    attachment_filename,
    attachment_json,
    bot_role_json,
    check_choices,
    check_commands,
    check_message,
    check_modal,
    dm_channel_json,
    empty_message,
    form_error,
    guild_create_json,
    is_empty,
    iso_now,
    member_json,
    message_json,
    role_json,
    text_channel_json,
    unknown,
    user_json,
)

DEFAULT_BOT_ID = 1_300_000_000_000_000_001
DEFAULT_USER_ID = 1_300_000_000_000_000_101
DEFAULT_GUILD_ID = 1_300_000_000_000_001_001
DEFAULT_CHANNEL_ID = 1_300_000_000_000_002_001
INTERACTION_TOKEN_TTL = 15 * 60.0
CHANNEL_MESSAGE_LIMIT = (5, 5.0)  # messages per seconds, in each channel
FAKE_DISCORD_TOKEN = "MTMwMDAwMDAwMDAwMDAwMDAwMQ.GfAkE1.fake-discord-token-for-tests-0123456789ab"
MAX_USER_MESSAGE = 4000  # a Nitro user's limit; nobody can send more
MAX_USER_UPLOAD = 500 * 1024 * 1024  # a file, with Nitro; 10 MiB without
MAX_WAVEFORM_SAMPLES = 256  # a voice message's waveform (Discord's apps downsample to it)
# Callback types each interaction type accepts (2 command, 3 component, 4 autocomplete, 5 modal).
ANSWERS = {2: (4, 5, 9), 3: (4, 5, 6, 7, 9), 4: (8,), 5: (4, 5, 6, 7)}
T = TypeVar("T")


@contextlib.contextmanager
def pointing_discord_py_at(fake: FakeDiscord) -> Iterator[None]:
    """Send discord.py's REST calls and gateway connections to `fake` until the block ends."""
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = fake.api_base_url
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


@dataclass
class Call:
    method: str
    path: str  # after /api/v10, e.g. /channels/123/messages
    query: dict[str, str]
    body: Any  # the parsed JSON (multipart: its payload_json), or None
    at: float  # time.monotonic() when it arrived
    status: int = 0
    files: dict[int, Upload] = field(default_factory=dict)  # multipart `files[n]` parts


@dataclass
class InteractionRecord:
    """One interaction the fake dispatched, and how the bot answered it."""

    id: int
    token: str
    type: int  # 2 command, 3 component, 4 autocomplete
    payload: dict[str, Any]
    dispatched_at: float
    component_message: StoredMessage | None = None
    callback_type: int | None = None
    callback_data: Any = None
    answered_at: float | None = None
    original: StoredMessage | None = None  # the response message, once there is one
    followups: list[StoredMessage] = field(default_factory=list)
    edits: list[Any] = field(default_factory=list)  # bodies of webhook message edits

    @property
    def choices(self) -> list[dict[str, Any]]:
        return list(self.callback_data["choices"]) if self.callback_type == 8 else []

    @property
    def is_ephemeral(self) -> bool:
        return self.original is not None and self.original.is_ephemeral


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    body: dict[str, Any]
    times: int
    retry_after: float | None = None
    is_global: bool = False


@dataclass
class _Bucket:
    limit: int
    per: float
    started: float = 0.0
    count: int = 0


class FakeDiscord:
    """One fake Discord for one bot; `start()` it, point discord.py at it, `close()` it."""

    def __init__(
        self,
        *,
        token: str = FAKE_DISCORD_TOKEN,
        application_id: int = DEFAULT_BOT_ID,
        bot_user_id: int = DEFAULT_BOT_ID,
        bot_username: str = "chatbridge-test",
    ) -> None:
        self.token = token
        self.application_id = application_id
        self.bot_user_id = bot_user_id
        self.bot_username = bot_username
        self.heartbeat_interval_ms = 41250
        self.enabled_intents = MEMBERS_INTENT | PRESENCES_INTENT | MESSAGE_CONTENT_INTENT
        self.interaction_deadline = 3.0  # seconds to answer an interaction
        # Seconds an interaction's token serves followups and edits; then 401 50027, as Discord.
        self.interaction_token_ttl = INTERACTION_TOKEN_TTL
        self.calls: list[Call] = []
        self.users: dict[int, dict[str, Any]] = {}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.gateway = FakeGateway(self)
        self._ids = Snowflakes()
        self._dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self._messages: dict[int, StoredMessage] = {}
        self._channel_messages: dict[int, list[StoredMessage]] = {}
        self._commands: dict[int | None, list[dict[str, Any]]] = {}
        self._interactions: dict[int, InteractionRecord] = {}
        self._faults: list[_Fault] = []
        # Discord's message bucket: 5 messages per 5 s per channel (the channel is the major
        # parameter); edits and everything else get the 50 per 1 s default.
        self._route_limits: list[tuple[str, re.Pattern[str], int, float]] = [
            ("POST", re.compile(r"/channels/\d+/messages"), *CHANNEL_MESSAGE_LIMIT)
        ]
        self._buckets: dict[str, _Bucket] = {}
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._bot = user_json(bot_user_id, bot_username, is_bot=True)
        self.users[bot_user_id] = self._bot
        self.files: dict[int, bytes] = {}  # attachment id -> content, of every upload
        self.cdn = FakeCdn()  # serves them at the attachments' `url` and `proxy_url`
        self._uploads: dict[int, Upload] = {}  # the files of the request being handled
        self._routes = self._route_table()

    @property
    def api_base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    async def start(self) -> None:
        await self.cdn.start()
        app = web.Application()
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._handle)
        app.on_shutdown.append(self._on_shutdown)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.cdn.close()

    async def _on_shutdown(self, _: web.Application) -> None:
        await self.gateway.drop_connections(1001, "Discord is going away.")

    # What tests read.

    def calls_to(self, method: str, path: str) -> list[Call]:
        """Calls with this method whose path fully matches the regex `path`."""
        pattern = re.compile(path)
        return [c for c in self.calls if c.method == method and pattern.fullmatch(c.path)]

    def messages(self, channel_id: int, *, include_user: bool = False) -> list[StoredMessage]:
        """The channel as it looks now, oldest first: the bot's messages (and the users')."""
        return [
            m
            for m in self._channel_messages.get(channel_id, [])
            if not m.is_deleted and (include_user or m.author["id"] == str(self.bot_user_id))
        ]

    def message(self, message_id: int) -> StoredMessage:
        return self._messages[message_id]

    def responses(self, interaction_id: int | str) -> InteractionRecord:
        """How the bot answered an interaction (KeyError for one the fake never sent)."""
        return self._interactions[int(interaction_id)]

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """The registered commands: global ones, or those of one guild."""
        return self._commands.get(guild_id, [])

    def dm_channel_of(self, user_id: int) -> int | None:
        return self._dm_channels.get(user_id)

    def events(self, name: str) -> list[dict[str, Any]]:
        """The `d` of every dispatch of this event, all sessions, in order."""
        frames = [f for s in self.gateway.sessions.values() for f in s.log if f["t"] == name]
        return [f["d"] for f in frames]

    @property
    def identifies(self) -> list[dict[str, Any]]:
        return self.gateway.identifies

    @property
    def heartbeats(self) -> list[Heartbeat]:
        return self.gateway.heartbeats

    @property
    def sessions(self) -> list[GatewaySession]:
        return list(self.gateway.sessions.values())

    async def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 10.0,  # noqa: ASYNC109 - a bounded poll, simpler to read than asyncio.timeout
        *,
        what: str = "",
    ) -> T:
        """Poll `predicate` until it returns something truthy (returned), else TimeoutError."""
        deadline = time.monotonic() + timeout
        while not (result := predicate()):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not seen within {timeout} s: {what or predicate}")
            await asyncio.sleep(0.01)
        return result

    # The world before and around the bot.

    def set_privileged_intents(
        self, *, members: bool = True, presences: bool = True, message_content: bool = True
    ) -> None:
        """The portal switches: IDENTIFY asking for a disabled one is closed with 4014."""
        self.enabled_intents = (
            (MEMBERS_INTENT if members else 0)
            | (PRESENCES_INTENT if presences else 0)
            | (MESSAGE_CONTENT_INTENT if message_content else 0)
        )

    def add_guild(
        self,
        guild_id: int = DEFAULT_GUILD_ID,
        name: str = "ChatBridge testers",
        *,
        channels: list[int | Mapping[str, Any]] | None = None,
        members: list[int | Mapping[str, Any]] | None = None,
        roles: list[int | Mapping[str, Any]] | None = None,
        locale: str = "en-US",
    ) -> FakeGuild:
        """A guild the bot is in: text channels, members ({"id", "username", "roles"}), roles.

        Connected sessions get its GUILD_CREATE, as when a bot joins a guild.
        """
        everyone = role_json(guild_id, "@everyone", DEFAULT_PERMISSIONS, 0)
        guild = FakeGuild(guild_id, name, DEFAULT_USER_ID, iso_now(), {guild_id: everyone}, {}, {})
        guild.locale = locale
        for position, role in enumerate(roles or [], start=1):
            spec = _spec(role)
            guild.roles[int(spec["id"])] = role_json(
                int(spec["id"]),
                spec.get("name", f"role-{position}"),
                str(spec.get("permissions", "0")),
                position,
            )
        default = (
            DEFAULT_CHANNEL_ID if DEFAULT_CHANNEL_ID not in self.channels else self._ids.next()
        )
        for position, channel in enumerate(channels or [default]):
            spec = _spec(channel)
            channel_id = int(spec["id"])
            data = text_channel_json(
                channel_id, guild_id, spec.get("name", f"chat-{position}"), position
            )
            guild.channels[channel_id] = self.channels[channel_id] = data
        # Like Discord, a managed role of the bot's own, which users can mention to address it.
        bot_role_id = self._ids.next()
        guild.roles[bot_role_id] = bot_role_json(
            bot_role_id, self.bot_user_id, self.bot_username, len(guild.roles)
        )
        guild.member_roles[self.bot_user_id] = [bot_role_id]
        for member in members or [DEFAULT_USER_ID]:
            spec = _spec(member)
            self._user(int(spec["id"]), spec.get("username"))
            guild.member_roles[int(spec["id"])] = [int(r) for r in spec.get("roles", [])]
        guild.owner_id = next(
            iter(u for u in guild.member_roles if u != self.bot_user_id), self.bot_user_id
        )
        self.guilds[guild_id] = guild
        self.gateway.dispatch("GUILD_CREATE", self._guild_create_for(guild), guild_id=guild_id)
        return guild

    def _guild_create_for(
        self, guild: FakeGuild
    ) -> Callable[[GatewaySession], dict[str, Any] | None]:
        def data_for(session: GatewaySession) -> dict[str, Any] | None:
            if not session.has_intent(GUILDS_INTENT):
                return None
            return guild_create_json(guild, self.users, self.application_id, is_join=True)

        return data_for

    def _user(self, user_id: int, username: str | None = None) -> dict[str, Any]:
        known = self.users.get(user_id)
        if known is None or (username is not None and known["username"] != username):
            default = "alice" if user_id == DEFAULT_USER_ID else f"user{str(user_id)[-4:]}"
            known = self.users[user_id] = user_json(user_id, username or default)
        return known

    # Faults.

    def rate_limit(
        self,
        method: str,
        path: str,
        retry_after: float = 0.5,
        *,
        times: int = 1,
        is_global: bool = False,
    ) -> FakeDiscord:
        """Answer the next `times` calls matching (method, path regex) with Discord's 429."""
        self._faults.append(
            _Fault(method, re.compile(path), 429, {}, times, retry_after, is_global)
        )
        return self

    def fail(
        self,
        method: str,
        path: str,
        *,
        status: int = 500,
        code: int = 0,
        message: str = "500: Internal Server Error",
        times: int = 1,
    ) -> FakeDiscord:
        """Answer the next `times` matching calls with this status and {"message", "code"}."""
        self._faults.append(
            _Fault(method, re.compile(path), status, {"message": message, "code": code}, times)
        )
        return self

    def limit_route(self, method: str, path: str, *, limit: int, per: float) -> FakeDiscord:
        """Give matching routes a bucket of `limit` calls per `per` seconds (default 50 per 1 s).

        Discord's message bucket, 5 per 5 s per channel, is on by default (CHANNEL_MESSAGE_LIMIT);
        discord.py waits it out from the `X-RateLimit-*` headers, as it does with Discord.
        """
        self._route_limits.insert(0, (method, re.compile(path), limit, per))
        return self

    async def drop_gateway(self, code: int = 4000, reason: str = "") -> None:
        """Close every gateway connection; sessions stay resumable (discord.py RESUMEs)."""
        await self.gateway.drop_connections(code, reason)

    # Users act: each builder sends the event on the gateway and returns its payload.

    def user_posts(
        self,
        content: str,
        author_id: int = DEFAULT_USER_ID,
        channel_id: int | None = None,
        *,
        guild_id: int | None = None,
        mentions_bot: bool = False,
        mentions_bot_role: bool = False,
        reply_to: int | None = None,
        reply_pings: bool = True,
        username: str | None = None,
        attachments: Sequence[tuple[str, bytes, str]] = (),
    ) -> dict[str, Any]:
        """A user's message (MESSAGE_CREATE): a DM without `guild_id`, else in a guild channel.

        A reply pings the replied-to author unless the user switched that off (`reply_pings`).
        `attachments` are (filename, bytes, content type) of files dropped in with the text.
        """
        if len(content) > MAX_USER_MESSAGE:
            raise ValueError(f"Discord users cannot send more than {MAX_USER_MESSAGE} characters")
        if len(attachments) > MAX_ATTACHMENTS:
            raise ValueError(f"Discord users cannot send more than {MAX_ATTACHMENTS} files")
        mention = f"<@{self.bot_user_id}>"
        if mentions_bot and mention not in content:
            content = f"{mention} {content}"
        if mentions_bot_role:
            if guild_id is None:
                raise ValueError("a role is mentioned only in a guild")
            content = f"<@&{self.bot_role_id(guild_id)}> {content}"
        files: list[int | NewAttachment] = [
            _user_file(name, data, content_type=content_type)
            for name, data, content_type in attachments
        ]
        if not content and not files:
            raise ValueError("Discord users cannot send an empty message")
        fields = MessageFields(content, [], [], 0, None, files)
        where = (author_id, username, channel_id, guild_id)
        return self._user_message(where, fields, reply_to=reply_to, reply_pings=reply_pings)

    def user_sends_voice_message(
        self,
        audio: bytes,
        author_id: int = DEFAULT_USER_ID,
        channel_id: int | None = None,
        *,
        guild_id: int | None = None,
        reply_to: int | None = None,
        reply_pings: bool = True,
        username: str | None = None,
        duration_secs: float = 1.5,
        waveform: bytes = bytes(range(0, 256, 8)),
    ) -> dict[str, Any]:
        """A voice message, as Discord's apps record it: the IS_VOICE_MESSAGE flag, no text
        (so no mention: in a guild it is a reply, or in a channel the bot reads), and one
        `voice-message.ogg` (audio/ogg) carrying `duration_secs` and a `waveform` of at most
        256 samples."""
        if len(waveform) > MAX_WAVEFORM_SAMPLES:
            raise ValueError(f"a waveform has at most {MAX_WAVEFORM_SAMPLES} samples")
        voice = _user_file("voice-message.ogg", audio, content_type="audio/ogg")
        voice = dataclasses.replace(voice, duration_secs=duration_secs, waveform=waveform)
        fields = MessageFields("", [], [], IS_VOICE_MESSAGE, None, [voice])
        where = (author_id, username, channel_id, guild_id)
        return self._user_message(where, fields, reply_to=reply_to, reply_pings=reply_pings)

    def _user_message(
        self,
        where: tuple[int, str | None, int | None, int | None],
        fields: MessageFields,
        *,
        reply_to: int | None,
        reply_pings: bool,
    ) -> dict[str, Any]:
        """Store a user's message and send it on the gateway; its payload."""
        author_id, username, channel_id, guild_id = where
        author = self._user(author_id, username)
        channel_id = self._channel_for(author_id, channel_id, guild_id)
        reference = None
        if reply_to is not None:
            reference = self._live_message(channel_id, reply_to)
            if reference is None:
                raise ValueError(f"no message {reply_to} in channel {channel_id} to reply to")
        message = self._store(
            channel_id, guild_id, author, fields, reference=reference, reply_pings=reply_pings
        )
        if not self._dispatch_message("MESSAGE_CREATE", message):
            raise RuntimeError("no gateway session receives this message; is the client ready?")
        return self._gateway_message(message)

    def bot_role_id(self, guild_id: int) -> int:
        """The id of the bot's managed role in that guild."""
        roles = self.guilds[guild_id].roles.values()
        tagged = (r for r in roles if r.get("tags", {}).get("bot_id") == str(self.bot_user_id))
        return int(next(tagged)["id"])

    def _channel_for(self, user_id: int, channel_id: int | None, guild_id: int | None) -> int:
        if guild_id is None:
            return self._open_dm(user_id, channel_id)
        guild = self.guilds.get(guild_id)
        if guild is None:
            raise ValueError(f"no guild {guild_id}; add_guild() it first")
        channel_id = channel_id if channel_id is not None else next(iter(guild.channels))
        if channel_id not in guild.channels:
            raise ValueError(f"channel {channel_id} is not in guild {guild_id}")
        guild.member_roles.setdefault(user_id, [])
        return channel_id

    def _open_dm(self, user_id: int, channel_id: int | None = None) -> int:
        known = self._dm_channels.get(user_id)
        if known is not None:
            if channel_id is not None and channel_id != known:
                raise ValueError(f"user {user_id}'s DM channel is {known}, not {channel_id}")
            return known
        channel_id = channel_id if channel_id is not None else self._ids.next()
        if channel_id in self.channels:
            raise ValueError(f"channel {channel_id} is not a DM channel of user {user_id}")
        self.channels[channel_id] = dm_channel_json(channel_id, self._user(user_id))
        self._dm_channels[user_id] = channel_id
        return channel_id

    def user_runs(
        self,
        command_name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user_id: int = DEFAULT_USER_ID,
        channel_id: int | None = None,
        guild_id: int | None = None,
        locale: str = "en-US",
        username: str | None = None,
    ) -> dict[str, Any]:
        """A slash command (INTERACTION_CREATE type 2); "group sub" names a subcommand."""
        data, target = self._command_data(command_name, guild_id)
        given = dict(options or {})
        for option in target.get("options") or []:
            if option["name"] in given:
                value = _option_value(option, given.pop(option["name"]))
                data["leaf"].append(
                    {"name": option["name"], "type": option["type"], "value": value}
                )
            elif option.get("required"):
                raise ValueError(f"/{command_name} requires the option {option['name']!r}")
        if given:
            raise ValueError(f"/{command_name} has no option(s) {sorted(given)}")
        return self._interact(
            2,
            data["data"],
            user_id=user_id,
            username=username,
            channel_id=channel_id,
            guild_id=guild_id,
            locale=locale,
        )

    def user_autocompletes(
        self,
        command_name: str,
        focused_option: str,
        value: str,
        *,
        options: Mapping[str, Any] | None = None,
        user_id: int = DEFAULT_USER_ID,
        channel_id: int | None = None,
        guild_id: int | None = None,
        locale: str = "en-US",
        username: str | None = None,
    ) -> dict[str, Any]:
        """Typing into an autocomplete option (INTERACTION_CREATE type 4)."""
        data, target = self._command_data(command_name, guild_id)
        defined = {o["name"]: o for o in target.get("options") or []}
        focused = defined.get(focused_option)
        if focused is None or not focused.get("autocomplete"):
            raise ValueError(f"/{command_name} has no autocomplete option {focused_option!r}")
        for name, other in (options or {}).items():
            data["leaf"].append({"name": name, "type": defined[name]["type"], "value": other})
        data["leaf"].append(
            {"name": focused_option, "type": focused["type"], "value": value, "focused": True}
        )
        return self._interact(
            4,
            data["data"],
            user_id=user_id,
            username=username,
            channel_id=channel_id,
            guild_id=guild_id,
            locale=locale,
        )

    def user_clicks(
        self,
        custom_id: str,
        message_id: int,
        *,
        user_id: int = DEFAULT_USER_ID,
        locale: str = "en-US",
        username: str | None = None,
    ) -> dict[str, Any]:
        """A click on a button the message shows (INTERACTION_CREATE type 3, component 2)."""
        message, button = self._component(message_id, custom_id)
        if button.get("type") != 2 or button.get("disabled"):
            raise ValueError(f"{custom_id!r} on message {message_id} is not an enabled button")
        data = {"custom_id": custom_id, "component_type": 2}
        return self._interact(
            3,
            data,
            user_id=user_id,
            username=username,
            channel_id=message.channel_id,
            guild_id=message.guild_id,
            locale=locale,
            message=message,
        )

    def user_selects(
        self,
        custom_id: str,
        values: list[str],
        *,
        message_id: int,
        user_id: int = DEFAULT_USER_ID,
        locale: str = "en-US",
        username: str | None = None,
    ) -> dict[str, Any]:
        """Picking options of a select menu the message shows (type 3, component 3)."""
        message, select = self._component(message_id, custom_id)
        if select.get("type") != 3 or select.get("disabled"):
            raise ValueError(
                f"{custom_id!r} on message {message_id} is not an enabled string select"
            )
        offered = {option["value"] for option in select["options"]}
        low, high = select.get("min_values", 1), select.get("max_values", 1)
        if not set(values) <= offered or not low <= len(values) <= high:
            raise ValueError(f"a user cannot pick {values} from {sorted(offered)} ({low}..{high})")
        data = {"custom_id": custom_id, "component_type": 3, "values": values}
        return self._interact(
            3,
            data,
            user_id=user_id,
            username=username,
            channel_id=message.channel_id,
            guild_id=message.guild_id,
            locale=locale,
            message=message,
        )

    def _component(self, message_id: int, custom_id: str) -> tuple[StoredMessage, dict[str, Any]]:
        message = self._messages.get(message_id)
        component = (
            None if message is None or message.is_deleted else message.find_component(custom_id)
        )
        if message is None or component is None:
            raise ValueError(f"message {message_id} shows no component {custom_id!r}")
        return message, component

    def _command_data(
        self, command_name: str, guild_id: int | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        top, *path = command_name.split()
        scopes = ([guild_id] if guild_id is not None else []) + [None]
        found = [
            (s, c) for s in scopes for c in self.commands(s) if c["name"] == top and c["type"] == 1
        ]
        if not found:
            raise ValueError(f"no slash command /{top} is registered for this user; sync first")
        scope, command = found[0]
        if guild_id is None and (
            command.get("dm_permission") is False or 1 not in (command.get("contexts") or [1])
        ):
            raise ValueError(f"/{top} cannot be used in DMs")
        data: dict[str, Any] = {"id": command["id"], "name": top, "type": 1, "options": []}
        if scope is not None:
            data["guild_id"] = str(scope)
        leaf, target = data["options"], command
        for name in path:
            target = next(
                o for o in target.get("options") or [] if o["name"] == name and o["type"] in (1, 2)
            )
            child = {"name": name, "type": target["type"], "options": []}
            leaf.append(child)
            leaf = child["options"]
        return {"data": data, "leaf": leaf}, target

    def _interact(
        self,
        kind: int,
        data: dict[str, Any],
        *,
        user_id: int,
        username: str | None,
        channel_id: int | None,
        guild_id: int | None,
        locale: str,
        message: StoredMessage | None = None,
    ) -> dict[str, Any]:
        """Dispatch INTERACTION_CREATE and keep its record; the token lives in the payload."""
        user = self._user(user_id, username)
        channel_id = self._channel_for(user_id, channel_id, guild_id)
        interaction_id, token = self._ids.next(), "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(channel_id),
            "channel": self.channels[channel_id],
            "locale": locale,
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if guild_id is not None:
            guild = self.guilds[guild_id]
            permissions = guild.permissions_of(user_id)
            payload["guild_id"] = str(guild_id)
            payload["guild"] = {"id": str(guild_id), "locale": guild.locale, "features": []}
            payload["guild_locale"] = guild.locale
            payload["member"] = member_json(
                user, guild.member_roles[user_id], guild.joined_at, permissions
            )
            payload["app_permissions"] = str(guild.permissions_of(self.bot_user_id))
            payload["authorizing_integration_owners"] = {"0": str(guild_id)}
            payload["context"] = 0
        else:
            payload["user"] = user
            payload["app_permissions"] = DEFAULT_PERMISSIONS
            payload["authorizing_integration_owners"] = {"0": str(user_id)}
            payload["context"] = 1
        if message is not None:
            payload["message"] = message_json(message, application_id=self.application_id)
        self._interactions[interaction_id] = InteractionRecord(
            interaction_id, token, kind, payload, time.monotonic(), message
        )
        if not self.gateway.dispatch("INTERACTION_CREATE", lambda _: payload, guild_id=guild_id):
            raise RuntimeError("no gateway session receives this interaction; is the client ready?")
        return payload

    # Gateway: what READY and GUILD_CREATE carry (see discord_gateway.GatewayHost).

    def _application_flags(self) -> int:
        flags = 1 << 23  # APPLICATION_COMMAND_BADGE
        flags |= (
            (1 << 13) if self.enabled_intents & PRESENCES_INTENT else 0
        )  # *_LIMITED: unverified
        flags |= (1 << 15) if self.enabled_intents & MEMBERS_INTENT else 0
        flags |= (1 << 19) if self.enabled_intents & MESSAGE_CONTENT_INTENT else 0
        return flags

    def _me(self) -> dict[str, Any]:
        return {
            **self._bot,
            "verified": True,
            "mfa_enabled": True,
            "email": None,
            "locale": "en-US",
        }

    def ready_data(self, session: GatewaySession) -> dict[str, Any]:
        data: dict[str, Any] = {
            "v": 10,
            "user": self._me(),
            "guilds": [
                {"id": str(g), "unavailable": True} for g in self.guilds if session.serves_guild(g)
            ],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": self._application_flags()},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["brazil", "us-east"],
            "user_settings": {},
            "auth": {},
            "_trace": ["fake-discord"],
        }
        if "shard" in session.identify:
            data["shard"] = list(session.shard)
        return data

    def guild_creates(self, session: GatewaySession) -> list[dict[str, Any]]:
        return [
            guild_create_json(guild, self.users, self.application_id)
            for guild in self.guilds.values()
            if session.serves_guild(guild.id)
        ]

    def members_chunk(self, guild_id: int, nonce: str | None) -> dict[str, Any]:
        guild = self.guilds[guild_id]
        members = [
            member_json(self.users[user_id], roles, guild.joined_at, None)
            for user_id, roles in guild.member_roles.items()
        ]
        chunk = {"guild_id": str(guild_id), "members": members, "chunk_index": 0, "chunk_count": 1}
        return {**chunk, "not_found": [], **({"nonce": nonce} if nonce else {})}

    # Messages as Discord keeps and echoes them.

    def _store(
        self,
        channel_id: int,
        guild_id: int | None,
        author: dict[str, Any],
        fields: MessageFields,
        *,
        reference: StoredMessage | None = None,
        interaction: dict[str, Any] | None = None,
        reply_pings: bool = True,
    ) -> StoredMessage:
        content = fields.content or ""
        version = MessageVersion(
            content,
            fields.embeds or [],
            fields.components or [],
            fields.flags or 0,
            time.monotonic(),
            self._attachments(fields.attachments or [], [], channel_id, fields.flags or 0),
        )
        mentioned = [int(found) for found in MENTION.findall(content)]
        mentions = [
            self.users[user_id] for user_id in dict.fromkeys(mentioned) if user_id in self.users
        ]
        if reference is not None and reply_pings and reference.author not in mentions:
            mentions.append(reference.author)  # a reply pings its author by default
        roles = self.guilds[guild_id].roles if guild_id is not None else {}
        mentioned_roles = [int(r) for r in dict.fromkeys(ROLE_MENTION.findall(content))]
        message = StoredMessage(
            self._ids.next(),
            channel_id,
            guild_id,
            author,
            iso_now(),
            [version],
            mentions,
            reference,
            interaction,
            mention_roles=[role_id for role_id in mentioned_roles if role_id in roles],
        )
        self._messages[message.id] = message
        self._channel_messages.setdefault(channel_id, []).append(message)
        return message

    def _live_message(self, channel_id: int, message_id: int) -> StoredMessage | None:
        message = self._messages.get(message_id)
        if message is None or message.is_deleted or message.channel_id != channel_id:
            return None
        return message

    def _gateway_message(
        self, message: StoredMessage, *, hide_content: bool = False
    ) -> dict[str, Any]:
        payload = message_json(message, application_id=self.application_id)
        if message.guild_id is not None:
            guild = self.guilds[message.guild_id]
            roles = guild.member_roles.get(int(message.author["id"]), [])
            payload["guild_id"] = str(message.guild_id)
            payload["member"] = member_json(None, roles, guild.joined_at, None)
        if hide_content:
            payload.update(content="", embeds=[], components=[], attachments=[])
        return payload

    def _dispatch_message(self, event: str, message: StoredMessage) -> int:
        if message.is_ephemeral:
            return 0
        is_guild = message.guild_id is not None
        is_visible = (
            not is_guild
            or message.author["id"] == str(self.bot_user_id)
            or any(user["id"] == str(self.bot_user_id) for user in message.mentions)
        )

        def data_for(session: GatewaySession) -> dict[str, Any] | None:
            if not session.has_intent(GUILD_MESSAGES_INTENT if is_guild else DM_MESSAGES_INTENT):
                return None
            hidden = not is_visible and not session.has_intent(MESSAGE_CONTENT_INTENT)
            return self._gateway_message(message, hide_content=hidden)

        return self.gateway.dispatch(event, data_for, guild_id=message.guild_id)

    def _edit(self, message: StoredMessage, body: dict[str, Any], fields: MessageFields) -> None:
        content = message.content if "content" not in body else fields.content or ""
        embeds = message.embeds if "embeds" not in body else fields.embeds or []
        components = message.components if "components" not in body else fields.components or []
        flags = message.flags & ~LOADING
        if fields.flags is not None:
            flags = (fields.flags & SENDABLE_FLAGS) | (message.flags & EPHEMERAL)
        attachments = message.attachments
        if fields.attachments is not None:
            kept, channel = message.attachments, message.channel_id
            attachments = self._attachments(fields.attachments, kept, channel, flags)
        if is_empty(content, embeds, components, attachments):
            raise empty_message()
        message.versions.append(
            MessageVersion(content, embeds, components, flags, time.monotonic(), attachments)
        )
        message.edited_timestamp = iso_now()
        self._dispatch_message("MESSAGE_UPDATE", message)

    def _delete(self, message: StoredMessage) -> None:
        message.is_deleted = True
        if not message.is_ephemeral:
            data = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id is not None:
                data["guild_id"] = str(message.guild_id)
            self.gateway.dispatch("MESSAGE_DELETE", lambda _: data, guild_id=message.guild_id)

    def _attachments(
        self,
        wanted: list[int | NewAttachment],
        kept: list[dict[str, Any]],
        channel: int,
        flags: int,
    ) -> list[dict[str, Any]]:
        """Attachment objects: existing ones kept by id, new ones stored with a new id."""
        result = []
        for entry in wanted:
            if isinstance(entry, int):
                found = next((a for a in kept if a["id"] == str(entry)), None)
                if found is None:
                    raise form_error(("attachments",), "ATTACHMENT_NOT_FOUND", "Unknown attachment")
                result.append(found)
                continue
            attachment_id = self._ids.next()
            self.files[attachment_id] = entry.upload.content
            filename = attachment_filename(entry.filename)
            served = CdnFile(entry.upload.content, attachment_content_type(entry))
            url, proxy_url = self.cdn.store(channel, attachment_id, filename, served)
            ephemeral = bool(flags & EPHEMERAL)
            result.append(
                attachment_json(
                    attachment_id, entry, url=url, proxy_url=proxy_url, ephemeral=ephemeral
                )
            )
        return result

    # HTTP.

    def _route_table(self) -> list[tuple[str, re.Pattern[str], Callable[..., Any], bool]]:
        """(method, path regex, handler, needs the bot token); webhook-token routes do not."""
        channel, message = r"/channels/(?P<channel>\d+)", r"/messages/(?P<message>\d+)"
        hook = r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)"
        commands = r"/applications/(?P<app>\d+)(?:/guilds/(?P<guild>\d+))?/commands"
        table: list[tuple[str, str, Callable[..., Any], bool]] = [
            ("GET", r"/users/@me", self._get_me, True),
            ("GET", r"/users/(?P<user>\d+)", self._get_user, True),
            ("GET", r"/gateway", self._get_gateway, False),
            ("GET", r"/gateway/bot", self._get_gateway_bot, True),
            ("GET", r"/oauth2/applications/@me", self._get_application, True),
            ("GET", commands, self._get_commands, True),
            ("PUT", commands, self._put_commands, True),
            ("POST", r"/users/@me/channels", self._open_dm_channel, True),
            ("GET", channel, self._get_channel, True),
            ("POST", channel + r"/messages", self._create_message, True),
            ("GET", channel + message, self._get_message, True),
            ("PATCH", channel + message, self._edit_message, True),
            ("DELETE", channel + message, self._delete_message, True),
            ("POST", channel + r"/typing", self._typing, True),
            (
                "POST",
                r"/interactions/(?P<interaction>\d+)/(?P<token>[^/]+)/callback",
                self._callback,
                False,
            ),
            ("POST", hook, self._followup, False),
            (
                "GET",
                hook + r"/messages/(?P<message>@original|\d+)",
                self._get_webhook_message,
                False,
            ),
            (
                "PATCH",
                hook + r"/messages/(?P<message>@original|\d+)",
                self._edit_webhook_message,
                False,
            ),
            (
                "DELETE",
                hook + r"/messages/(?P<message>@original|\d+)",
                self._delete_webhook_message,
                False,
            ),
        ]
        return [(method, re.compile(path), handler, auth) for method, path, handler, auth in table]

    async def _handle(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        call = Call(request.method, path, dict(request.query), None, time.monotonic())
        self.calls.append(call)
        headers = {"Via": "1.1 google"}  # as Discord's; discord.py retries a 429 only with Via
        try:
            handler, params, template = self._route(request.method, path, request.headers)
            call.body, call.files = await _read_body(request)
            self._take_fault(call)
            headers.update(self._take_bucket(call, template, params))
            # Handlers are synchronous: the uploads are theirs until they return.
            self._uploads = call.files
            try:
                result = handler(params, call.body, call.query)
            finally:
                self._uploads = {}
        except ApiError as refusal:
            call.status = refusal.status
            headers.update(refusal.headers)
            return _json_response(refusal.body, refusal.status, headers)
        call.status = 204 if result is None else 200
        if result is None:
            return web.Response(status=204, headers=headers)
        return _json_response(result, 200, headers)

    def _route(
        self, method: str, path: str, headers: Mapping[str, str]
    ) -> tuple[Callable[..., Any], dict[str, str], str]:
        matching = [(m, p, h, a) for m, p, h, a in self._routes if p.fullmatch(path)]
        if not matching:
            raise ApiError(404, "404: Not Found", 0)
        for route_method, pattern, handler, needs_token in matching:
            if route_method == method:
                if needs_token and headers.get("Authorization") != f"Bot {self.token}":
                    raise ApiError(401, "401: Unauthorized", 0)
                found = pattern.fullmatch(path)
                assert found is not None
                return handler, {k: v for k, v in found.groupdict().items() if v}, pattern.pattern
        raise ApiError(405, "405: Method Not Allowed", 0)

    def _take_fault(self, call: Call) -> None:
        for fault in self._faults:
            if fault.times > 0 and fault.method == call.method and fault.path.fullmatch(call.path):
                fault.times -= 1
                if fault.retry_after is not None:
                    raise _rate_limited(call.path, fault.retry_after, is_global=fault.is_global)
                raise ApiError(fault.status, fault.body["message"], fault.body["code"])

    def _take_bucket(self, call: Call, template: str, params: dict[str, str]) -> dict[str, str]:
        """Count the call in its bucket (route + major parameter); 429 when it is spent."""
        limit, per = next(
            (
                (n, s)
                for m, p, n, s in self._route_limits
                if m == call.method and p.fullmatch(call.path)
            ),
            (50, 1.0),
        )
        major = next(
            (params[k] for k in ("channel", "guild", "interaction", "token") if k in params), ""
        )
        route = f"{call.method} {template}"
        bucket = self._buckets.setdefault(f"{route} {major}", _Bucket(limit, per))
        now = time.monotonic()
        if now >= bucket.started + bucket.per:  # a new window, under the current limit
            bucket.started, bucket.count, bucket.limit, bucket.per = now, 0, limit, per
        reset_after = bucket.started + bucket.per - now
        if bucket.count >= bucket.limit:
            raise _rate_limited(route, reset_after, is_global=False, limit=bucket.limit)
        bucket.count += 1
        return _limit_headers(route, bucket.limit, bucket.limit - bucket.count, reset_after)

    # REST handlers: each takes (path params, JSON body, query) and returns JSON, or None for 204.

    def _get_me(self, *_: Any) -> dict[str, Any]:
        return self._me()

    def _get_user(self, params: dict[str, str], *_: Any) -> dict[str, Any]:
        user = self.users.get(int(params["user"]))
        if user is None:
            raise unknown("User", 10013)
        return user

    def _get_gateway(self, *_: Any) -> dict[str, Any]:
        return {"url": self.gateway_url}

    def _get_gateway_bot(self, *_: Any) -> dict[str, Any]:
        used = len(self.gateway.identifies)
        limit = {
            "total": 1000,
            "remaining": 1000 - used,
            "reset_after": 86_400_000,
            "max_concurrency": 1,
        }
        return {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}

    def _get_application(self, *_: Any) -> dict[str, Any]:
        owner = (
            self.users[DEFAULT_USER_ID]
            if DEFAULT_USER_ID in self.users
            else self._user(DEFAULT_USER_ID)
        )
        return {
            "id": str(self.application_id),
            "name": self.bot_username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": hashlib.sha256(self.token.encode()).hexdigest(),
            "owner": owner,
            "team": None,
            "flags": self._application_flags(),
            "bot": self._bot,
            "hook": True,
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "tags": [],
            "approximate_guild_count": len(self.guilds),
            "integration_types_config": {"0": {}, "1": {}},
        }

    def _scope(self, params: dict[str, str]) -> int | None:
        if int(params["app"]) != self.application_id:
            raise ApiError(403, "Missing Access", 50001)
        guild_id = int(params["guild"]) if "guild" in params else None
        if guild_id is not None and guild_id not in self.guilds:
            raise ApiError(403, "Missing Access", 50001)
        return guild_id

    def _get_commands(self, params: dict[str, str], *_: Any) -> list[dict[str, Any]]:
        return self.commands(self._scope(params))

    def _put_commands(self, params: dict[str, str], body: Any, _: Any) -> list[dict[str, Any]]:
        scope = self._scope(params)
        previous = {(c["type"], c["name"]): c["id"] for c in self.commands(scope)}
        stored = []
        for command in check_commands(body):
            kind = command.get("type", 1)
            saved = {
                "id": previous.get((kind, command["name"])) or str(self._ids.next()),
                "application_id": str(self.application_id),
                "version": str(self._ids.next()),
                "type": kind,
                "name": command["name"],
                "name_localizations": command.get("name_localizations") or None,
                "description": command.get("description", ""),
                "description_localizations": command.get("description_localizations") or None,
                "default_member_permissions": command.get("default_member_permissions"),
                "contexts": command.get("contexts"),
                "integration_types": command.get("integration_types") or [0],
                "nsfw": command.get("nsfw", False),
            }
            if command.get("options"):
                saved["options"] = command["options"]
            if scope is None:
                saved["dm_permission"] = command.get("dm_permission", True)
            else:
                saved["guild_id"] = str(scope)
            stored.append(saved)
        self._commands[scope] = stored
        return stored

    def _open_dm_channel(self, _: Any, body: Any, __: Any) -> dict[str, Any]:
        recipient = int((body or {}).get("recipient_id") or 0)
        if recipient not in self.users or recipient == self.bot_user_id:
            raise unknown("User", 10013)
        return self.channels[self._open_dm(recipient)]

    def _channel(self, params: dict[str, str]) -> int:
        channel_id = int(params["channel"])
        if channel_id not in self.channels:
            raise unknown("Channel", 10003)
        return channel_id

    def _get_channel(self, params: dict[str, str], *_: Any) -> dict[str, Any]:
        return self.channels[self._channel(params)]

    def _typing(self, params: dict[str, str], *_: Any) -> None:
        self._channel(params)

    def _create_message(self, params: dict[str, str], body: Any, _: Any) -> dict[str, Any]:
        channel_id = self._channel(params)
        fields = check_message(
            body, allowed_flags=SENDABLE_FLAGS, is_edit=False, files=self._uploads
        )
        if is_empty(
            fields.content or "", fields.embeds or [], fields.components or [], fields.attachments
        ):
            raise empty_message()
        reference = None
        if fields.reference is not None:
            target = int(fields.reference.get("message_id") or 0)
            reference = self._live_message(
                int(fields.reference.get("channel_id") or channel_id), target
            )
            if reference is None and fields.reference.get("fail_if_not_exists", True):
                raise form_error(
                    ("message_reference",), "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
        guild_id = self.channels[channel_id].get("guild_id")
        guild = int(guild_id) if guild_id else None
        message = self._store(channel_id, guild, self._bot, fields, reference=reference)
        self._dispatch_message("MESSAGE_CREATE", message)
        return message_json(message, application_id=self.application_id)

    def _channel_message(self, params: dict[str, str]) -> StoredMessage:
        message = self._live_message(self._channel(params), int(params["message"]))
        if message is None or message.is_ephemeral:
            raise unknown("Message", 10008)
        return message

    def _get_message(self, params: dict[str, str], *_: Any) -> dict[str, Any]:
        return message_json(self._channel_message(params), application_id=self.application_id)

    def _edit_message(self, params: dict[str, str], body: Any, _: Any) -> dict[str, Any]:
        message = self._channel_message(params)
        if message.author["id"] != str(self.bot_user_id):
            raise ApiError(403, "Cannot edit a message authored by another user", 50005)
        self._edit(
            message,
            body,
            check_message(body, allowed_flags=SENDABLE_FLAGS, is_edit=True, files=self._uploads),
        )
        return message_json(message, application_id=self.application_id)

    def _delete_message(self, params: dict[str, str], *_: Any) -> None:
        message = self._channel_message(params)
        if message.author["id"] != str(self.bot_user_id):
            raise ApiError(403, "Missing Permissions", 50013)
        self._delete(message)

    # Interactions: the callback, then the webhook of the interaction token.

    def _callback(self, params: dict[str, str], body: Any, query: Mapping[str, str]) -> Any:
        record = self._interactions.get(int(params["interaction"]))
        if record is None or record.token != params["token"]:
            raise unknown("interaction", 10062)
        if record.callback_type is not None:
            raise ApiError(400, "Interaction has already been acknowledged.", 40060)
        if time.monotonic() - record.dispatched_at > self.interaction_deadline:
            raise unknown("interaction", 10062)
        kind = body.get("type") if isinstance(body, dict) else None
        if kind not in ANSWERS[record.type]:
            allowed = ", ".join(map(str, ANSWERS[record.type]))
            raise form_error(("type",), "BASE_TYPE_CHOICES", f"Value must be one of {{{allowed}}}.")
        data = body.get("data")
        self._answer(record, kind, data if isinstance(data, dict) else {})
        record.callback_type, record.callback_data, record.answered_at = (
            kind,
            data,
            time.monotonic(),
        )
        if query.get("with_response", "").lower() not in ("1", "true"):
            return None
        return self._callback_response(record, kind)

    def _answer(self, record: InteractionRecord, kind: int, data: dict[str, Any]) -> None:
        if kind == 8:
            check_choices(data)
        elif kind == 9:
            check_modal(data)
        elif kind in (6, 7):
            record.original = record.component_message
            if kind == 7 and record.original is not None:
                fields = check_message(
                    data, allowed_flags=INTERACTION_FLAGS, is_edit=True, files=self._uploads
                )
                self._edit(record.original, data, fields)
        elif kind == 4:
            fields = check_message(
                data, allowed_flags=INTERACTION_FLAGS, is_edit=False, files=self._uploads
            )
            if is_empty(
                fields.content or "",
                fields.embeds or [],
                fields.components or [],
                fields.attachments,
            ):
                raise empty_message()
            record.original = self._respond(record, fields)
        else:  # 5: a "thinking…" message, filled by the first followup or an edit
            flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            record.original = self._respond(record, MessageFields("", [], [], flags, None))

    def _respond(self, record: InteractionRecord, fields: MessageFields) -> StoredMessage:
        payload = record.payload
        metadata = {
            "id": str(record.id),
            "type": record.type,
            "user": payload.get("user") or payload["member"]["user"],
            "authorizing_integration_owners": payload["authorizing_integration_owners"],
        }
        channel_id = int(payload["channel_id"])
        guild_id = int(payload["guild_id"]) if "guild_id" in payload else None
        message = self._store(channel_id, guild_id, self._bot, fields, interaction=metadata)
        self._dispatch_message("MESSAGE_CREATE", message)
        return message

    def _callback_response(self, record: InteractionRecord, kind: int) -> dict[str, Any]:
        interaction: dict[str, Any] = {"id": str(record.id), "type": record.type}
        resource: dict[str, Any] = {"type": kind}
        if record.original is not None:
            interaction["response_message_id"] = str(record.original.id)
            interaction["response_message_loading"] = record.original.is_loading
            interaction["response_message_ephemeral"] = record.original.is_ephemeral
            resource["message"] = message_json(record.original, application_id=self.application_id)
        return {"interaction": interaction, "resource": resource}

    def _interaction_of(self, params: dict[str, str]) -> InteractionRecord:
        record = next((r for r in self._interactions.values() if r.token == params["token"]), None)
        if (
            int(params["app"]) != self.application_id
            or record is None
            or record.callback_type is None
        ):
            raise unknown("Webhook", 10015)
        if record.callback_type in (1, 8):
            raise unknown("Webhook", 10015)
        if time.monotonic() - record.dispatched_at > self.interaction_token_ttl:
            raise ApiError(401, "Invalid Webhook Token", 50027)
        return record

    def _followup(self, params: dict[str, str], body: Any, query: Mapping[str, str]) -> Any:
        record = self._interaction_of(params)
        fields = check_message(
            body, allowed_flags=INTERACTION_FLAGS, is_edit=False, files=self._uploads
        )
        if is_empty(
            fields.content or "", fields.embeds or [], fields.components or [], fields.attachments
        ):
            raise empty_message()
        original = record.original
        is_waiting = original is not None and original.is_loading and not original.is_deleted
        if record.callback_type == 5 and is_waiting:
            self._edit(original, {**body, "flags": None}, fields)  # the defer's ephemerality stays
            message = original
        else:
            message = self._respond(record, fields)
        record.followups.append(message)
        if query.get("wait", "").lower() not in ("1", "true"):
            return None
        return message_json(message, application_id=self.application_id)

    def _webhook_message(self, params: dict[str, str]) -> tuple[InteractionRecord, StoredMessage]:
        record = self._interaction_of(params)
        if params["message"] == "@original":
            message = record.original
        else:
            wanted = int(params["message"])
            message = next(
                (m for m in [record.original, *record.followups] if m and m.id == wanted), None
            )
        if message is None or message.is_deleted:
            raise unknown("Message", 10008)
        return record, message

    def _get_webhook_message(self, params: dict[str, str], *_: Any) -> dict[str, Any]:
        return message_json(self._webhook_message(params)[1], application_id=self.application_id)

    def _edit_webhook_message(self, params: dict[str, str], body: Any, _: Any) -> dict[str, Any]:
        record, message = self._webhook_message(params)
        fields = check_message(
            body, allowed_flags=INTERACTION_FLAGS, is_edit=True, files=self._uploads
        )
        self._edit(message, {**body, "flags": None}, fields)
        record.edits.append(body)
        return message_json(message, application_id=self.application_id)

    def _delete_webhook_message(self, params: dict[str, str], *_: Any) -> None:
        self._delete(self._webhook_message(params)[1])


def _user_file(name: str, data: bytes, *, content_type: str) -> NewAttachment:
    """A file a user attaches; Discord's apps refuse an empty one, or one past Nitro's limit."""
    if not data:
        raise ValueError("Discord users cannot send an empty file")
    if len(data) > MAX_USER_UPLOAD:
        raise ValueError(f"Discord users cannot send files over {MAX_USER_UPLOAD} bytes")
    return NewAttachment(Upload(name, content_type, data), name, None, content_type=content_type)


def _rate_limited(route: str, retry_after: float, *, is_global: bool, limit: int = 5) -> ApiError:
    """Discord's 429: body {message, retry_after, global} and the X-RateLimit-* headers."""
    retry_after = math.ceil(retry_after * 1000) / 1000
    refusal = ApiError(429, "You are being rate limited.", 0, retry_after=retry_after)
    refusal.body = {
        "message": refusal.body["message"],
        "retry_after": retry_after,
        "global": is_global,
    }
    if is_global:
        refusal.body["code"] = 0
    refusal.headers.update(_limit_headers(route, limit, 0, retry_after))
    refusal.headers["Retry-After"] = str(math.ceil(retry_after))
    refusal.headers["X-RateLimit-Scope"] = "global" if is_global else "user"
    if is_global:
        refusal.headers["X-RateLimit-Global"] = "true"
    return refusal


def _json_response(body: Any, status: int, headers: dict[str, str]) -> web.Response:
    """Exactly `Content-Type: application/json`, as Discord sends: discord.py compares the
    header with that string and treats anything else (even with `; charset=utf-8`) as text."""
    data = json.dumps(body).encode()
    return web.Response(
        body=data, status=status, headers={**headers, "Content-Type": "application/json"}
    )


def _limit_headers(route: str, limit: int, remaining: int, reset_after: float) -> dict[str, str]:
    reset_after = math.ceil(reset_after * 1000) / 1000  # never tell a client to come back early
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": hashlib.sha256(route.encode()).hexdigest()[:32],
    }


def _spec(item: int | Mapping[str, Any]) -> Mapping[str, Any]:
    return {"id": item} if isinstance(item, int) else item


def _option_value(option: dict[str, Any], value: Any) -> Any:
    """A value as the Discord client would submit it for this option, or ValueError."""
    kind, name = option["type"], option["name"]
    types: dict[int, type | tuple[type, ...]] = {3: str, 4: int, 5: bool, 10: (int, float)}
    expected = types.get(kind)
    if expected is None:
        raise NotImplementedError(f"option {name!r}: type {kind} is not supported by this fake")
    if not isinstance(value, expected) or (kind in (4, 10) and isinstance(value, bool)):
        raise ValueError(f"option {name!r} takes {expected}, not {value!r}")
    if option.get("choices") and value not in [c["value"] for c in option["choices"]]:
        raise ValueError(f"option {name!r} offers only its choices, not {value!r}")
    size = len(value) if isinstance(value, str) else value
    low = option.get("min_length" if kind == 3 else "min_value")
    high = option.get("max_length" if kind == 3 else "max_value")
    if kind != 5 and ((low is not None and size < low) or (high is not None and size > high)):
        raise ValueError(f"option {name!r} must be within {low}..{high}, not {value!r}")
    return value


async def _read_body(request: web.Request) -> tuple[Any, dict[int, Upload]]:
    """The JSON body (of a multipart body: its payload_json) and the `files[n]` parts."""
    if not request.body_exists:
        return None, {}
    files: dict[int, Upload] = {}
    if request.content_type == "multipart/form-data":
        form = await request.post()
        raw = form.get("payload_json")
        text = raw if isinstance(raw, str) else None
        for name, value in form.items():
            found = re.fullmatch(r"files\[(\d+)\]", name)
            if found and isinstance(value, web.FileField):
                upload = Upload(value.filename, value.content_type, value.file.read())
                files[int(found[1])] = upload
    else:
        text = await request.text()
    if text is None:
        return None, files
    try:
        return json.loads(text), files
    except ValueError:
        raise ApiError(400, "The request body contains invalid JSON.", 50109) from None


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A started FakeDiscord expecting FAKE_DISCORD_TOKEN, closed after the test."""
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
