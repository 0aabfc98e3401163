"""An album's items, delivered as one update each, are gathered into one message; an item
that comes after its album was taken is a message of its own."""

from __future__ import annotations

import asyncio
import datetime as dt

from telegram import Chat, Message, PhotoSize, Update, Video

from bots.telegram.order import ALBUM_MAX_ITEMS, Albums

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
GROUP = Chat(-100, "group")
QUIET = 0.01  # seconds without a new item before an album is taken: short, these tests wait


def item(message_id: int, album: str | None = "A", *, chat: Chat = GROUP) -> Message:
    picture = [PhotoSize(f"p{message_id}", f"u{message_id}", 90, 90, 10)]
    return Message(message_id, NOW, chat, photo=picture, media_group_id=album)


def noted(albums: Albums, *messages: Message) -> None:
    for message in messages:
        albums.note(Update(message.message_id, message=message))


async def test_a_message_of_no_album_is_alone_at_once() -> None:
    albums = Albums(quiet_seconds=3600)  # it would never come if it waited
    lone = item(1, album=None)
    noted(albums, lone)

    assert await albums.gather(lone) == [lone]


async def test_the_first_item_takes_its_album_in_order_and_the_others_find_themselves_taken():
    albums = Albums(quiet_seconds=QUIET)
    first, second, third = item(1), item(2), item(3)
    noted(albums, first, third, second)

    assert await albums.gather(first) == [first, second, third]
    assert await albums.gather(second) == []
    assert await albums.gather(third) == []


async def test_an_item_arriving_while_the_first_waits_joins_it_and_ten_end_the_wait():
    albums = Albums(quiet_seconds=3600)  # only the tenth item ends the wait
    items = [item(n) for n in range(1, ALBUM_MAX_ITEMS + 1)]
    noted(albums, items[0])

    gathering = asyncio.create_task(albums.gather(items[0]))
    await asyncio.sleep(0)  # the first item's handler now waits for the rest
    noted(albums, *items[1:])

    assert await gathering == items


async def test_an_item_after_its_album_was_taken_is_a_message_of_its_own():
    albums = Albums(quiet_seconds=QUIET)
    first, second, late = item(1), item(2), item(3)
    noted(albums, first, second)
    assert await albums.gather(first) == [first, second]
    assert await albums.gather(second) == []

    noted(albums, late)

    assert await albums.gather(late) == [late]


async def test_albums_of_two_chats_with_one_id_stay_apart():
    albums = Albums(quiet_seconds=QUIET)
    here, there = item(1), item(1, chat=Chat(-200, "group"))
    noted(albums, here, there)

    assert await albums.gather(here) == [here]
    assert await albums.gather(there) == [there]


async def test_an_albums_video_is_not_noted_and_is_not_taken_with_its_photos():
    albums = Albums(quiet_seconds=QUIET)
    photo = item(1)
    video = Message(2, NOW, GROUP, video=Video("v", "uv", 640, 480, 3), media_group_id="A")
    noted(albums, photo, video)

    assert await albums.gather(photo) == [photo]
