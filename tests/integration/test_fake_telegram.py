"""The fake Telegram Bot API, driven by the real python-telegram-bot client, behaves like Telegram.

No mocks: a real `telegram.Bot` talks HTTP to `FakeTelegram` on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import aiohttp
import pytest
from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    MessageEntity,
    ReplyParameters,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Conflict, InvalidToken, RetryAfter
from telegram.ext import filters

from tests.attachment_files import image_file
from tests.fakes import telegram_server
from tests.fakes.clock import FakeClock
from tests.fakes.telegram_server import DEFAULT_FORUM_ID, DEFAULT_USER_ID, FakeTelegram

# The fixture lives with the fake (tests/conftest.py may load that module as a plugin instead).
fake_telegram = telegram_server.fake_telegram

USER = DEFAULT_USER_ID
FORUM = DEFAULT_FORUM_ID
NOT_MODIFIED = "Message is not modified: specified new message content and reply markup"


@pytest.fixture
async def bot(fake_telegram: FakeTelegram) -> AsyncIterator[Bot]:
    """A real PTB Bot on the fake, initialized (its getMe done), with one known private chat."""
    fake_telegram.user_says("hi")
    async with Bot(fake_telegram.token, base_url=fake_telegram.base_url) as client:
        yield client


def _keyboard(*callback_data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(d, callback_data=d) for d in callback_data]])


async def test_get_me_describes_the_bot_the_way_telegram_does(bot: Bot) -> None:
    me = await bot.get_me()

    assert (me.id, me.username, me.is_bot) == (123456, "chatbridge_test_bot", True)
    assert me.can_join_groups is True
    assert me.can_read_all_group_messages is False
    assert me.supports_inline_queries is False


async def test_a_plain_message_is_stored_as_the_user_sees_it(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    sent = await bot.send_message(USER, "  hello there \n")

    assert sent.text == "hello there"
    assert sent.from_user is not None
    assert sent.from_user.username == "chatbridge_test_bot"
    assert sent.chat.type == "private"
    shown = fake_telegram.messages(USER)
    assert [(m.message_id, m.visible_text) for m in shown] == [(sent.message_id, "hello there")]


async def test_html_is_shown_without_tags_and_with_entities(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    html = '<b>Bold</b> &lt;tag&gt; &amp; <a href="https://example.com">link</a>'

    sent = await bot.send_message(USER, html, parse_mode=ParseMode.HTML)

    assert sent.text == "Bold <tag> & link"
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [
        (MessageEntity.BOLD, 0, 4),
        (MessageEntity.TEXT_LINK, 13, 4),
    ]
    stored = fake_telegram.messages(USER)[-1]
    assert (stored.text, stored.parse_mode, stored.visible_text) == (html, "HTML", sent.text)


async def test_a_message_to_a_chat_telegram_never_showed_the_bot_is_refused(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(424242, "anyone?")


async def test_an_unsupported_html_tag_is_refused_with_telegrams_reason(bot: Bot) -> None:
    with pytest.raises(BadRequest) as refused:
        await bot.send_message(USER, "ok <p>no</p>", parse_mode=ParseMode.HTML)

    # PTB drops "Bad Request: " and capitalizes, which lowers the rest of Telegram's text.
    assert refused.value.message == (
        'Can\'t parse entities: unsupported start tag "p" at byte offset 3'
    )


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        ("<b>bold", 'can\'t find end tag corresponding to start tag "b"'),
        ("<b>bold</i>", 'unmatched end tag at byte offset 7, expected "</b>", found "</i>"'),
        ("text</b>", "unexpected end tag at byte offset 4"),
        ("1 < 2", 'unsupported start tag "" at byte offset 2'),
        ("x <b", "unclosed start tag at byte offset 2"),
        ("<span>x</span>", 'tag "span" must have class "tg-spoiler" at byte offset 0'),
        ("Tom & Jerry", 'unescaped "&" at byte offset 4'),
    ],
)
async def test_broken_html_is_refused(bot: Bot, html: str, reason: str) -> None:
    with pytest.raises(BadRequest, match="Can't parse entities") as refused:
        await bot.send_message(USER, html, parse_mode=ParseMode.HTML)

    assert reason in refused.value.message.lower()


async def test_nested_supported_tags_and_a_code_block_with_a_language_are_accepted(
    bot: Bot,
) -> None:
    html = (
        "<b>a <i>b</i></b> <tg-spoiler>s</tg-spoiler> <blockquote expandable>q</blockquote>"
        '<pre><code class="language-python">x = 1</code></pre>'
    )

    sent = await bot.send_message(USER, html, parse_mode=ParseMode.HTML)

    assert sent.text == "a b s qx = 1"
    pre = next(e for e in sent.entities if e.type == MessageEntity.PRE)
    assert (pre.offset, pre.length, pre.language) == (7, 5, "python")


async def test_text_over_4096_visible_characters_is_too_long(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(USER, "x" * 4097)


async def test_4096_visible_characters_are_accepted_however_many_bytes_of_html(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    sent = await bot.send_message(USER, "&lt;" * 4096, parse_mode=ParseMode.HTML)

    assert sent.text == "<" * 4096
    assert fake_telegram.messages(USER)[-1].visible_text == "<" * 4096


@pytest.mark.parametrize("text", ["", "   \n ", "<b></b>"])
async def test_text_with_nothing_visible_is_refused(bot: Bot, text: str) -> None:
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(USER, text, parse_mode=ParseMode.HTML)


async def test_an_edit_changes_what_the_user_sees_and_keeps_the_history(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    sent = await bot.send_message(USER, "draft")

    edited = await bot.edit_message_text("final", chat_id=USER, message_id=sent.message_id)

    assert edited.text == "final"
    assert edited.edit_date is not None
    stored = fake_telegram.messages(USER)[-1]
    assert [v.visible_text for v in stored.versions] == ["draft", "final"]
    assert stored.edit_count == 1


async def test_an_edit_with_the_same_text_and_markup_is_not_modified(bot: Bot) -> None:
    sent = await bot.send_message(USER, "<b>same</b>", parse_mode=ParseMode.HTML)

    with pytest.raises(BadRequest, match=NOT_MODIFIED):
        await bot.edit_message_text(
            "<b>same</b>", chat_id=USER, message_id=sent.message_id, parse_mode=ParseMode.HTML
        )


async def test_the_same_words_in_another_format_are_a_modification(bot: Bot) -> None:
    sent = await bot.send_message(USER, "<b>same</b>", parse_mode=ParseMode.HTML)

    edited = await bot.edit_message_text(
        "<i>same</i>", chat_id=USER, message_id=sent.message_id, parse_mode=ParseMode.HTML
    )

    assert [e.type for e in edited.entities] == [MessageEntity.ITALIC]


async def test_an_edit_without_reply_markup_removes_the_buttons(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    sent = await bot.send_message(USER, "pick", reply_markup=_keyboard("a", "b"))

    await bot.edit_message_text("picked", chat_id=USER, message_id=sent.message_id)

    assert fake_telegram.messages(USER)[-1].buttons() == []


async def test_an_edit_of_an_unknown_message_is_refused(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("new", chat_id=USER, message_id=999)


async def test_the_users_own_message_cannot_be_edited_by_the_bot(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    said = fake_telegram.user_says("mine")

    with pytest.raises(BadRequest, match="Message can't be edited"):
        await bot.edit_message_text("yours", chat_id=USER, message_id=said["message"]["message_id"])


async def test_a_queued_rate_limit_raises_retry_after_then_the_call_goes_through(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.rate_limit("sendMessage", retry_after=3)

    with pytest.raises(RetryAfter) as limited:
        await bot.send_message(USER, "first")
    await bot.send_message(USER, "second")

    assert limited.value.retry_after == dt.timedelta(seconds=3)
    assert [c.status for c in fake_telegram.calls_to("sendMessage")] == [429, 200]
    assert [m.visible_text for m in fake_telegram.messages(USER)] == ["second"]


async def test_flood_control_refuses_edits_to_one_chat_that_come_too_fast(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.flood_control(edits_per_second=0.5)
    sent = await bot.send_message(USER, "0")
    await bot.edit_message_text("1", chat_id=USER, message_id=sent.message_id)

    with pytest.raises(RetryAfter) as limited:
        await bot.edit_message_text("2", chat_id=USER, message_id=sent.message_id)

    assert dt.timedelta(seconds=1) <= limited.value.retry_after <= dt.timedelta(seconds=2)


async def test_get_updates_returns_queued_updates_and_an_offset_confirms_them(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("one")

    first = await bot.get_updates()
    confirmed = await bot.get_updates(offset=first[-1].update_id + 1)

    assert [u.update_id for u in first] == [1, 2]
    assert [u.message.text for u in first if u.message] == ["hi", "one"]
    assert confirmed == ()


async def test_a_long_poll_returns_as_soon_as_an_update_arrives(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    await bot.get_updates(offset=2)  # confirm "hi"
    poll = asyncio.create_task(bot.get_updates(offset=2, timeout=30))
    await fake_telegram.wait_for(lambda: len(fake_telegram.calls_to("getUpdates")) == 2)

    fake_telegram.user_says("wake up")
    updates = await asyncio.wait_for(poll, timeout=5)

    assert [u.message.text for u in updates if u.message] == ["wake up"]


async def test_a_second_poller_terminates_the_first_with_a_conflict(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    # One Bot cannot poll twice at once (PTB gives getUpdates a pool of one connection),
    # so the second poller is a second bot process with the same token.
    await bot.get_updates(offset=2)
    first = asyncio.create_task(bot.get_updates(offset=2, timeout=30))
    await fake_telegram.wait_for(lambda: len(fake_telegram.calls_to("getUpdates")) == 2)

    async with Bot(fake_telegram.token, base_url=fake_telegram.base_url) as other:
        second = await other.get_updates(offset=2, timeout=0)

    with pytest.raises(Conflict, match="terminated by other getUpdates request"):
        await asyncio.wait_for(first, timeout=5)
    assert second == ()


async def test_a_command_carries_the_bot_command_entity_ptb_recognises(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    plain = Update.de_json(fake_telegram.user_says("/new My title"), bot)
    addressed = Update.de_json(fake_telegram.user_says("/switch@chatbridge_test_bot 2"), bot)
    chatter = Update.de_json(fake_telegram.user_says("not /a command at start"), bot)

    assert filters.COMMAND.check_update(plain)
    assert filters.COMMAND.check_update(addressed)
    assert not filters.COMMAND.check_update(chatter)
    assert plain.message is not None
    assert addressed.message is not None
    assert plain.message.parse_entities([MessageEntity.BOT_COMMAND]) == {
        plain.message.entities[0]: "/new"
    }
    assert [(e.offset, e.length) for e in addressed.message.entities] == [(0, 27)]


async def test_a_mention_of_the_bot_carries_a_mention_entity(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    update = Update.de_json(
        fake_telegram.user_says("hey @chatbridge_test_bot 👋", chat_type="group"), bot
    )

    assert update.message is not None
    assert update.message.chat.type == "group"
    assert update.message.parse_entities([MessageEntity.MENTION]) == {
        update.message.entities[0]: "@chatbridge_test_bot"
    }


async def test_stickers_and_photos_arrive_without_text(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    sticker = Update.de_json(fake_telegram.user_sends_sticker(), bot)
    jpeg = image_file("JPEG", (1000, 750))
    photo = Update.de_json(fake_telegram.user_sends_photo(jpeg, caption="look"), bot)

    assert sticker.message is not None
    assert sticker.message.sticker is not None
    assert sticker.message.text is None
    assert photo.message is not None
    assert photo.message.photo[-1].width == 1000
    assert (photo.message.text, photo.message.caption) == (None, "look")


async def test_commands_are_recorded_per_language(bot: Bot, fake_telegram: FakeTelegram) -> None:
    await bot.set_my_commands([BotCommand("new", "Start a new session")])
    await bot.set_my_commands([BotCommand("new", "Nova sessão")], language_code="pt")

    english = await bot.get_my_commands()
    portuguese = await bot.get_my_commands(language_code="pt")

    assert [(c.command, c.description) for c in english] == [("new", "Start a new session")]
    assert [(c.command, c.description) for c in portuguese] == [("new", "Nova sessão")]
    assert fake_telegram.commands(language_code="pt") == [
        {"command": "new", "description": "Nova sessão"}
    ]


@pytest.mark.parametrize(
    ("command", "description", "refusal"),
    [
        ("New-Session", "ok", "Bot_command_invalid"),
        ("new", "", "Command description must be non-empty"),
        ("x" * 33, "ok", "Command length must not exceed 32"),
        ("new", "d" * 257, "Command description length must not exceed 256"),
    ],
)
async def test_a_bad_command_is_refused(
    bot: Bot, command: str, description: str, refusal: str
) -> None:
    with pytest.raises(BadRequest, match=refusal):
        await bot.set_my_commands([BotCommand(command, description)])


async def test_callback_data_over_64_bytes_is_refused(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(USER, "pick", reply_markup=_keyboard("é" * 33))


async def test_a_tap_becomes_a_callback_query_that_can_be_answered_once(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    sent = await bot.send_message(USER, "pick", reply_markup=_keyboard("yes", "no"))

    update = Update.de_json(fake_telegram.user_taps("yes", message_id=sent.message_id), bot)
    assert update.callback_query is not None
    assert update.callback_query.data == "yes"
    assert await update.callback_query.answer("noted")

    with pytest.raises(BadRequest, match="Query is too old"):
        await update.callback_query.answer()
    assert fake_telegram.callback_answers[update.callback_query.id]["text"] == "noted"


async def test_a_callback_query_answered_after_telegrams_timeout_is_too_old(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    assert fake_telegram.callback_query_timeout == 15.0  # Telegram's, unless a test shortens it
    fake_telegram.callback_query_timeout = 0.2
    sent = await bot.send_message(USER, "pick", reply_markup=_keyboard("yes"))
    update = Update.de_json(fake_telegram.user_taps("yes", message_id=sent.message_id), bot)
    assert update.callback_query is not None

    await asyncio.sleep(0.3)

    with pytest.raises(BadRequest, match="Query is too old and response timeout expired"):
        await update.callback_query.answer("late")
    assert fake_telegram.callback_answers == {}


async def test_a_tap_on_a_button_the_message_does_not_show_is_a_test_error(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    sent = await bot.send_message(USER, "pick", reply_markup=_keyboard("yes"))

    with pytest.raises(ValueError, match="no button"):
        fake_telegram.user_taps("maybe", message_id=sent.message_id)


async def test_a_webhook_makes_get_updates_a_conflict_until_it_is_deleted(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    await bot.set_webhook("https://bots.example.com/telegram", secret_token="s3cret")

    with pytest.raises(Conflict, match="webhook is active"):
        await bot.get_updates()
    info = await bot.get_webhook_info()
    await bot.delete_webhook(drop_pending_updates=True)

    assert info.url == "https://bots.example.com/telegram"
    assert fake_telegram.webhook is None
    assert await bot.get_updates() == ()


async def test_a_wrong_token_is_rejected_when_the_bot_initializes(
    fake_telegram: FakeTelegram,
) -> None:
    wrong = Bot("123456:WRONG-token", base_url=fake_telegram.base_url)

    with pytest.raises(InvalidToken, match="rejected by the server"):
        async with wrong:
            pass


async def test_chat_actions_deletes_and_unknown_methods(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    sent = await bot.send_message(USER, "bye")

    assert await bot.send_chat_action(USER, "typing")
    with pytest.raises(BadRequest, match="Wrong parameter action"):
        await bot.send_chat_action(USER, "dancing")
    assert await bot.delete_message(USER, sent.message_id)
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await bot.delete_message(USER, sent.message_id)
    assert fake_telegram.messages(USER) == []


async def test_json_bodies_and_query_strings_are_read_like_forms(
    fake_telegram: FakeTelegram,
) -> None:
    fake_telegram.user_says("hi")
    url = f"{fake_telegram.base_url}{fake_telegram.token}"
    markup = {"inline_keyboard": [[{"text": "ok", "callback_data": "ok"}]]}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/sendMessage", json={"chat_id": USER, "text": "json", "reply_markup": markup}
        ) as sent:
            body = await sent.json()
        async with session.get(f"{url}/GETME") as me:
            me_body = await me.json()
        async with session.get(f"{url}/sendDice?chat_id={USER}") as dice:
            dice_body = await dice.json()

    assert body["ok"]
    assert body["result"]["reply_markup"] == markup
    assert me_body["result"]["username"] == "chatbridge_test_bot"
    assert (dice.status, dice_body) == (
        404,
        {"ok": False, "error_code": 404, "description": "Not Found"},
    )


async def test_without_the_escaping_check_a_bare_ampersand_shows_as_text_like_telegram() -> None:
    lenient = FakeTelegram(requires_escaping=False)
    await lenient.start()
    try:
        lenient.user_says("hi")
        async with Bot(lenient.token, base_url=lenient.base_url) as client:
            sent = await client.send_message(USER, "Tom & Jerry &nbsp;", parse_mode="HTML")
    finally:
        await lenient.close()

    assert sent.text == "Tom & Jerry &nbsp;"


async def test_a_document_arrives_with_its_name_bytes_and_html_caption(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    sent = await bot.send_document(
        USER, b"# Notes\n\nhi\n", filename="notes.md", caption="<b>Notes</b> &amp; more",
        parse_mode=ParseMode.HTML,
    )  # fmt: skip

    assert sent.document is not None
    assert (sent.document.file_name, sent.document.file_size) == ("notes.md", 12)
    assert sent.caption == "Notes & more"
    assert sent.text is None
    assert [(e.type, e.offset, e.length) for e in sent.caption_entities] == [
        (MessageEntity.BOLD, 0, 5)
    ]
    shown = fake_telegram.messages(USER)[-1]
    assert shown.visible_text == "Notes & more"
    assert fake_telegram.files[shown.extra["document"]["file_id"]] == b"# Notes\n\nhi\n"


async def test_a_document_sent_again_by_its_file_id_needs_no_upload(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    first = await bot.send_document(USER, b"data", filename="a.txt")
    assert first.document is not None

    again = await bot.send_document(USER, first.document.file_id)

    assert again.document is not None
    assert again.document.file_id == first.document.file_id
    with pytest.raises(BadRequest, match="Wrong file identifier"):
        await bot.send_document(USER, "BQACAgIAAxkBAAInvented")


@pytest.mark.parametrize(
    ("content", "caption", "reason"),
    [
        (b"", None, "File must be non-empty"),
        (b"data", "x" * 1025, "Message caption is too long"),
        (b"data", "<b>open", "Can't parse entities"),
    ],
    ids=["empty-file", "long-caption", "broken-html"],
)
async def test_a_document_telegram_would_refuse_is_refused(
    bot: Bot, content: bytes, caption: str | None, reason: str
) -> None:
    with pytest.raises(BadRequest, match=reason):
        await bot.send_document(
            USER, content, filename="a.txt", caption=caption, parse_mode=ParseMode.HTML
        )


async def test_a_caption_of_1024_characters_is_accepted(bot: Bot) -> None:
    sent = await bot.send_document(USER, b"data", filename="a.txt", caption="x" * 1024)

    assert sent.caption == "x" * 1024


# Forum topics and replies.


async def test_a_message_in_a_forum_topic_carries_its_thread_and_ptb_sees_a_topic_message(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    tides = fake_telegram.open_topic("Tides")

    update = Update.de_json(fake_telegram.user_says("hello", thread_id=tides), bot)

    message = update.effective_message
    assert message is not None
    assert (message.chat_id, message.message_thread_id, message.is_topic_message) == (
        FORUM,
        tides,
        True,
    )
    assert message.chat.is_forum is True
    with pytest.raises(ValueError, match="no topic"):
        fake_telegram.user_says("hello", thread_id=tides + 100)


async def test_messages_actions_and_documents_go_to_the_topic_named_and_others_are_refused(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    tides = fake_telegram.open_topic("Tides")
    fake_telegram.user_says("hello", thread_id=tides)

    sent = await bot.send_message(FORUM, "in the topic", message_thread_id=tides)
    document = await bot.send_document(FORUM, b"data", filename="a.txt", message_thread_id=tides)
    await bot.send_chat_action(FORUM, "typing", message_thread_id=tides)
    general = await bot.send_message(FORUM, "in General")

    assert (sent.message_thread_id, sent.is_topic_message) == (tides, True)
    assert document.message_thread_id == tides
    assert general.message_thread_id is None
    shown = fake_telegram.messages(FORUM)
    assert [(m.visible_text, m.thread_id) for m in shown] == [
        ("in the topic", tides),
        ("", tides),
        ("in General", None),
    ]
    assert [(a.chat_id, a.action, a.thread_id) for a in fake_telegram.chat_actions] == [
        (FORUM, "typing", tides)
    ]
    for send in (
        bot.send_message(FORUM, "lost", message_thread_id=tides + 100),
        bot.send_chat_action(FORUM, "typing", message_thread_id=tides + 100),
        bot.send_document(FORUM, b"data", filename="a.txt", message_thread_id=tides + 100),
        bot.send_message(USER, "no topics in a private chat", message_thread_id=tides),
    ):
        with pytest.raises(BadRequest, match="Message thread not found"):
            await send
    assert len(fake_telegram.messages(FORUM)) == 3
    assert len(fake_telegram.chat_actions) == 1


async def test_a_reply_without_a_thread_goes_to_the_topic_of_the_message_it_answers(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    tides = fake_telegram.open_topic("Tides")
    question = fake_telegram.user_says("hello", thread_id=tides)["message"]

    reply = await bot.send_message(
        FORUM, "answer", reply_parameters=ReplyParameters(question["message_id"])
    )

    assert reply.message_thread_id == tides
    assert reply.reply_to_message is not None
    assert reply.reply_to_message.message_id == question["message_id"]


async def test_a_reply_to_a_deleted_message_is_refused_unless_sending_without_reply_is_allowed(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    tides = fake_telegram.open_topic("Tides")
    question = fake_telegram.user_says("hello", thread_id=tides)["message"]
    fake_telegram.messages(FORUM, include_user=True)[-1].is_deleted = True  # the user deleted it
    gone = question["message_id"]

    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(FORUM, "answer", reply_parameters=ReplyParameters(gone))
    anyway = ReplyParameters(gone, allow_sending_without_reply=True)
    lost = await bot.send_message(FORUM, "answer", reply_parameters=anyway)
    kept = await bot.send_message(FORUM, "answer", reply_parameters=anyway, message_thread_id=tides)

    # Without the question, nothing says which topic a reply belongs to: only the thread id.
    assert (lost.reply_to_message, lost.message_thread_id) == (None, None)
    assert (kept.reply_to_message, kept.message_thread_id) == (None, tides)


# --- drafts (sendMessageDraft) -----------------------------------------------------------------


def draft_texts(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [draft.visible_text for draft in fake.drafts(chat_id)]


async def test_drafts_show_the_latest_text_until_the_bots_next_message_and_are_no_messages(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    assert await bot.send_message_draft(USER, 7, "The tide")
    assert await bot.send_message_draft(USER, 7, "The tide <b>rises</b>", parse_mode=ParseMode.HTML)

    shown = fake_telegram.shown_draft(USER)
    assert shown is not None
    assert (shown.draft_id, shown.visible_text, shown.parse_mode) == (7, "The tide rises", "HTML")
    assert shown.entities == [{"type": "bold", "offset": 9, "length": 5}]
    assert draft_texts(fake_telegram, USER) == ["The tide", "The tide rises"]
    assert fake_telegram.messages(USER) == []  # a draft is not a message of the chat

    await bot.send_message(USER, "The tide rises twice a day.")

    assert fake_telegram.shown_draft(USER) is None  # the message took its place
    assert len(fake_telegram.drafts(USER)) == 2


async def test_a_draft_is_shown_for_30_seconds_without_a_newer_one(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    clock = FakeClock()
    fake_telegram.draft_clock = clock
    await bot.send_message_draft(USER, 1, "still writing")

    clock.advance(telegram_server.DRAFT_TTL)
    assert fake_telegram.shown_draft(USER) is not None
    clock.advance(0.001)
    assert fake_telegram.shown_draft(USER) is None


async def test_a_draft_to_a_group_is_refused_as_telegram_refuses_it(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("hello @chatbridge_test_bot", chat_type="group")

    with pytest.raises(BadRequest, match=r"(?i)textdraft_peer_invalid"):
        await bot.send_message_draft(telegram_server.DEFAULT_GROUP_ID, 1, "nope")

    assert fake_telegram.drafts(telegram_server.DEFAULT_GROUP_ID) == []


async def test_a_draft_in_a_forum_topic_is_refused_as_in_any_group(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    tides = fake_telegram.open_topic("Tides")

    with pytest.raises(BadRequest, match=r"(?i)textdraft_peer_invalid"):
        await bot.send_message_draft(FORUM, 1, "nope", message_thread_id=tides)


@pytest.mark.parametrize(("draft_id", "is_taken"), [(-1, True), (0, False), (1, True)])
async def test_a_draft_id_must_be_non_zero(
    bot: Bot, fake_telegram: FakeTelegram, draft_id: int, is_taken: bool
) -> None:
    if is_taken:
        assert await bot.send_message_draft(USER, draft_id, "hi")
        assert [d.draft_id for d in fake_telegram.drafts(USER)] == [draft_id]
        return
    with pytest.raises(BadRequest, match=r"(?i)draft_id must be non-zero"):
        await bot.send_message_draft(USER, draft_id, "hi")


@pytest.mark.parametrize(("visible", "is_taken"), [(4095, True), (4096, True), (4097, False)])
async def test_a_draft_takes_at_most_4096_visible_characters_however_many_bytes_of_html(
    bot: Bot, fake_telegram: FakeTelegram, visible: int, is_taken: bool
) -> None:
    html = "<b>" + "&lt;" * visible + "</b>"
    if is_taken:
        await bot.send_message_draft(USER, 1, html, parse_mode=ParseMode.HTML)
        assert fake_telegram.drafts(USER)[-1].visible_text == "<" * visible
        return
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message_draft(USER, 1, html, parse_mode=ParseMode.HTML)


@pytest.mark.parametrize("text", ["", "   ", "<b></b>"])
async def test_a_draft_with_nothing_visible_is_refused(bot: Bot, text: str) -> None:
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message_draft(USER, 1, text, parse_mode=ParseMode.HTML)


async def test_a_draft_with_broken_html_is_refused_as_a_message_would_be(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Can't parse entities") as refused:
        await bot.send_message_draft(USER, 1, "<b>bold", parse_mode=ParseMode.HTML)

    assert 'end tag corresponding to start tag "b"' in refused.value.message


async def test_a_draft_to_an_unknown_chat_or_a_missing_topic_is_refused(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message_draft(424242, 1, "anyone?")
    with pytest.raises(BadRequest, match="Message thread not found"):
        await bot.send_message_draft(USER, 1, "no topics here", message_thread_id=5)


async def test_refused_drafts_answer_400_once_their_parameters_are_checked(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.refuse_drafts()

    with pytest.raises(BadRequest, match=r"(?i)textdraft_peer_invalid"):
        await bot.send_message_draft(USER, 1, "hi")
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message_draft(USER, 1, "")

    assert [c.status for c in fake_telegram.calls_to("sendMessageDraft")] == [400, 400]
    assert fake_telegram.drafts(USER) == []
    assert (await bot.send_message(USER, "messages still go")).text == "messages still go"


async def test_a_bot_api_without_drafts_answers_404_as_for_any_unknown_method(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.refuse_drafts(as_unknown_method=True)

    with pytest.raises(InvalidToken):  # how python-telegram-bot reads a 404
        await bot.send_message_draft(USER, 1, "hi")

    assert [c.status for c in fake_telegram.calls_to("sendMessageDraft")] == [404]


async def test_drafts_refused_to_one_chat_still_go_to_the_others(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("hi", user_id=2002, username="bob")
    fake_telegram.refuse_drafts(chat_id=USER)

    with pytest.raises(BadRequest, match=r"(?i)textdraft_peer_invalid"):
        await bot.send_message_draft(USER, 1, "hi")
    assert await bot.send_message_draft(2002, 1, "hi bob")

    assert draft_texts(fake_telegram, 2002) == ["hi bob"]
