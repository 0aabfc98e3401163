"""Which private chats take drafts: all of them, until Telegram refuses drafts in one, which is
then remembered for the process's life, within a bounded memory (the oldest refusal forgotten
first)."""

from __future__ import annotations

import pytest

from bots.telegram.drafts import REFUSALS_KEPT, DraftChats

CAPACITY = 3


def test_every_chat_takes_drafts_until_one_refuses_them() -> None:
    chats = DraftChats()

    chats.refuse(1001)

    assert not chats.allow(1001)
    assert chats.allow(1002)


@pytest.mark.parametrize("refusals", [CAPACITY - 1, CAPACITY])
def test_up_to_the_capacity_every_refusal_is_remembered(refusals: int) -> None:
    chats = DraftChats(capacity=CAPACITY)

    for chat_id in range(refusals):
        chats.refuse(chat_id)

    assert [chats.allow(chat_id) for chat_id in range(refusals)] == [False] * refusals


def test_past_the_capacity_the_oldest_refusal_is_forgotten_first() -> None:
    chats = DraftChats(capacity=CAPACITY)

    for chat_id in range(CAPACITY + 1):
        chats.refuse(chat_id)

    assert chats.allow(0)  # it will try a draft once more, and fall back again if refused
    assert [chats.allow(chat_id) for chat_id in range(1, CAPACITY + 1)] == [False] * CAPACITY


def test_a_chat_refusing_again_counts_as_the_newest() -> None:
    chats = DraftChats(capacity=CAPACITY)
    for chat_id in range(CAPACITY):
        chats.refuse(chat_id)

    chats.refuse(0)  # e.g. a second answer, streaming there when the first was refused
    chats.refuse(CAPACITY)

    assert not chats.allow(0)
    assert chats.allow(1)


def test_the_shipped_capacity_remembers_ten_thousand_chats() -> None:
    chats = DraftChats()

    for chat_id in range(REFUSALS_KEPT + 1):
        chats.refuse(chat_id)

    assert REFUSALS_KEPT == 10_000
    assert chats.allow(0)
    assert not chats.allow(1)
    assert not chats.allow(REFUSALS_KEPT)


def test_draft_ids_are_non_zero_and_never_repeat_in_a_process() -> None:
    chats = DraftChats()

    ids = [chats.new_draft_id() for _ in range(1000)]

    assert 0 not in ids
    assert len(set(ids)) == len(ids)
