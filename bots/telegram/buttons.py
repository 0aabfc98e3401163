"""Inline buttons that know whose they are.

A button's callback data is its owner's Telegram id (base 36) and its command:
`"lfls~/switch 0123…"`. In a group anyone can tap any message's buttons, and the tap must be
refused before anything changes (keyboard closed, session switched), so the owner has to travel
with the tap: Telegram keeps no state of ours, and the data is all that comes back, on any
replica, after any restart. Base 36 keeps the longest data (`/delete <32 hex> confirm` under
the largest user id, 2^52) within Telegram's 64 bytes.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from core.commands import Choice

DISMISS = "noop"  # the command of a button that only closes its keyboard
SEPARATOR = "~"
MAX_CALLBACK_DATA_BYTES = 64  # Telegram refuses a keyboard with longer data
_DIGITS = string.digits + string.ascii_lowercase


@dataclass(frozen=True)
class Tap:
    """What a tapped button stands for. `owner` is None for a button from before owners were
    recorded: those stay usable (the core still lets a user act on their own sessions only)."""

    owner: int | None
    command: str | None  # None: just close the keyboard

    def is_refused_to(self, user_id: int) -> bool:
        return self.owner is not None and self.owner != user_id


def keyboard(choices: tuple[Choice, ...], owner: int) -> InlineKeyboardMarkup:
    rows = [[InlineKeyboardButton(c.label, callback_data=button_data(owner, c.command))]
            for c in choices]  # fmt: skip
    return InlineKeyboardMarkup(rows)


def button_data(owner: int, command: str | None) -> str:
    data = f"{_base36(owner)}{SEPARATOR}{command or DISMISS}"
    if len(data.encode()) > MAX_CALLBACK_DATA_BYTES:  # a new command too long for a button
        raise ValueError(f"callback data over {MAX_CALLBACK_DATA_BYTES} bytes: {data!r}")
    return data


def read_tap(data: str | None) -> Tap:
    """The owner and command of a tapped button's data."""
    if data is None:
        return Tap(None, None)
    owner, separator, command = data.partition(SEPARATOR)
    if not separator or not owner or any(c not in _DIGITS for c in owner):
        owner, command = "", data  # a button sent before owners were recorded
    return Tap(int(owner, 36) if owner else None, None if command == DISMISS else command)


def _base36(number: int) -> str:
    if number < 0:
        raise ValueError("Telegram user ids are positive")
    digits = ""
    while True:
        number, digit = divmod(number, 36)
        digits = _DIGITS[digit] + digits
        if number == 0:
            return digits
