"""/stop on Discord, end to end (`python -m bots` on the fake Discord): the ⏹ button under a
streaming answer is acknowledged at once (a deferred update, within Discord's 3 s) and ends
the answer, leaving what was shown marked stopped and no button; the /stop slash command does
the same privately; a stranger's ⏹ in a guild channel is refused and the answer goes on."""

from __future__ import annotations

import asyncio
import time

from core.messages import ENGLISH, text
from tests.e2e import test_discord_chat
from tests.e2e.discord_support import CHANNEL, GUILD, Person, StartBot
from tests.e2e.test_discord_chat import BOB_ID, bot_messages, until
from tests.fakes.discord_server import DEFAULT_USER_ID, FakeDiscord, StoredMessage
from tests.fakes.openrouter_server import FakeOpenRouter

STOPPED = text(ENGLISH, "answer_stopped")
DEFERRED_UPDATE = 6  # callback type: the clicked message will be edited (or left as it is)
STOP_WITHIN_SECONDS = 1.0


# The service on the fakes, as test_discord_chat.py starts it.
start_bot = test_discord_chat.start_bot


def stop_button(message: StoredMessage) -> str | None:
    """The custom id of the ⏹ under `message`, None when it has none."""
    ids = [c["custom_id"] for row in message.components for c in row.get("components", [])]
    stops = [custom_id for custom_id in ids if custom_id.startswith("cb:stop:")]
    return stops[0] if stops else None


async def held_preview(
    person: Person, fake_openrouter: FakeOpenRouter, said: str
) -> tuple[StoredMessage, asyncio.Event]:
    """Post `said`; once its answer's preview shows ⏹, the message and the model's gate."""
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    before = len(bot_messages(person))
    person.posts(said)

    def preview() -> StoredMessage | None:
        shown = bot_messages(person)[before:]
        return shown[0] if shown and stop_button(shown[0]) else None

    return await until(person, preview, what="a preview with ⏹"), gate


async def test_the_stop_button_is_acknowledged_at_once_and_ends_the_answer(
    start_bot: StartBot, fake_discord: FakeDiscord, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    alice = Person(fake_discord)
    preview, gate = await held_preview(alice, fake_openrouter, "tell me about tides")
    custom_id = stop_button(preview)
    assert custom_id is not None
    shown = preview.content.removesuffix(" …")

    clicked_at = time.monotonic()
    click = fake_discord.user_clicks(custom_id, preview.id, user_id=DEFAULT_USER_ID)
    await until(alice, lambda: preview.content.endswith(STOPPED), what="the stopped mark")
    took = time.monotonic() - clicked_at
    gate.set()

    record = fake_discord.responses(click["id"])
    assert record.callback_type == DEFERRED_UPDATE
    assert took < STOP_WITHIN_SECONDS, f"stopped after {took:.2f} s"
    assert preview.content == f"{shown}\n\n{STOPPED}"
    assert stop_button(preview) is None
    assert len(bot_messages(alice)) == 1  # no message of its own for the click


async def test_the_stop_command_stops_the_answer_privately(
    start_bot: StartBot, fake_discord: FakeDiscord, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    alice = Person(fake_discord)
    preview, gate = await held_preview(alice, fake_openrouter, "tell me about currents")
    try:
        said = await alice.command("stop")
        assert said.content == text(ENGLISH, "stop_done")
        await until(alice, lambda: preview.content.endswith(STOPPED), what="the stopped mark")
    finally:
        gate.set()
    nothing = await alice.command("stop")
    assert nothing.content == text(ENGLISH, "nothing_to_stop")


async def test_a_strangers_stop_button_is_refused_privately_and_the_answer_goes_on(
    start_bot: StartBot, fake_discord: FakeDiscord, fake_openrouter: FakeOpenRouter
) -> None:
    bob_member = {"id": BOB_ID, "username": "bob"}
    fake_discord.add_guild(GUILD, channels=[CHANNEL], members=[DEFAULT_USER_ID, bob_member])
    service = await start_bot()
    alice = Person(fake_discord, guild_id=GUILD, channel_id=CHANNEL)
    bob = Person(fake_discord, user_id=BOB_ID, username="bob", guild_id=GUILD, channel_id=CHANNEL)
    mention = f"<@{fake_discord.bot_user_id}>"
    preview, gate = await held_preview(alice, fake_openrouter, f"{mention} a story")
    custom_id = stop_button(preview)
    assert custom_id is not None
    try:
        click = fake_discord.user_clicks(custom_id, preview.id, user_id=bob.user_id)
        record = fake_discord.responses(click["id"])
        refusal = await until(bob, lambda: record.followups, what="the private refusal")
        assert [m.content for m in refusal] == [text(ENGLISH, "not_your_buttons")]
        assert stop_button(preview) is not None  # nothing else changed
    finally:
        gate.set()
    await until(alice, lambda: "echo: a story" in preview.content, what="the whole answer")
    assert stop_button(preview) is None
    assert not service.events("discord.handler_failed")
