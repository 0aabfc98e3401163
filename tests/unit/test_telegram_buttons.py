"""Inline buttons carry their owner: read back as written, within Telegram's 64 bytes."""

from __future__ import annotations

import pytest

from bots.telegram.buttons import MAX_CALLBACK_DATA_BYTES, Tap, button_data, keyboard, read_tap
from core.commands import CONFIRM, Choice

LARGEST_USER_ID = 2**52  # Telegram: user ids have at most 52 significant bits
SESSION_ID = "0123456789abcdef" * 2


@pytest.mark.parametrize("owner", [0, 1, 1001, 7_123_456_789, LARGEST_USER_ID])
@pytest.mark.parametrize(
    "command", [f"/switch {SESSION_ID}", f"/delete {SESSION_ID} {CONFIRM}", None]
)
def test_a_buttons_owner_and_command_are_read_back_as_written(
    owner: int, command: str | None
) -> None:
    data = button_data(owner, command)

    assert len(data.encode()) <= MAX_CALLBACK_DATA_BYTES
    assert read_tap(data) == Tap(owner, command)


def test_only_the_owner_may_tap() -> None:
    tap = read_tap(button_data(1001, "/sessions"))

    assert not tap.is_refused_to(1001)
    assert tap.is_refused_to(2002)


@pytest.mark.parametrize(
    ("data", "command"),
    [(f"/switch {SESSION_ID}", f"/switch {SESSION_ID}"), ("noop", None), ("A~/x", "A~/x")],
)
def test_a_button_from_before_owners_were_recorded_is_anyones(data: str, command: str) -> None:
    assert read_tap(data) == Tap(None, command)
    assert not read_tap(data).is_refused_to(2002)


def test_a_command_too_long_for_a_button_is_refused_here_not_by_telegram() -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        button_data(1001, "/" + "x" * 64)


def test_a_keyboard_has_one_button_per_row_each_owned() -> None:
    markup = keyboard((Choice("Delete", "/delete x"), Choice("Cancel", None)), owner=1001)

    rows = [[(b.text, b.callback_data) for b in row] for row in markup.inline_keyboard]
    assert rows == [[("Delete", "rt~/delete x")], [("Cancel", "rt~noop")]]
