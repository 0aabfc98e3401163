"""Discord users as the front sees them: whether they may talk, and in which language.

Only interactions carry the user's client language; it is remembered (for the most recent
LOCALES_REMEMBERED users) for their plain messages, which carry none.
"""

from __future__ import annotations

from collections import OrderedDict

import discord

from bots.chatfront.access import AllowList, Platform
from core.messages import ENGLISH, normalize_locale
from core.settings import Settings
from core.spaces import GroupSessions, Speaker, chat_of, group_speaker

DISCORD = Platform("discord")
LOCALES_REMEMBERED = 10_000

Author = discord.User | discord.Member


def allow_list(settings: Settings) -> AllowList:
    """Everyone, unless DISCORD_ALLOWED_USERS or DISCORD_ALLOWED_ROLES name who may talk."""
    return AllowList(DISCORD, settings.discord_allowed_users, settings.discord_allowed_roles)


def may_talk(allowed: AllowList, user: Author) -> bool:
    """Roles are only known in a guild: in DMs, only DISCORD_ALLOWED_USERS lets a user in."""
    roles = user.roles if isinstance(user, discord.Member) else ()
    return allowed.admits(user.id, user.name, roles)


def speaker_in(
    user: Author, channel_id: int, *, in_guild: bool, may_moderate: bool, mode: GroupSessions
) -> Speaker:
    """`user` in the space of a channel: their own in a DM; in a guild channel or thread (a
    chat of its own), theirs there or the channel's (GROUP_SESSIONS). `may_moderate`: they
    hold Manage Messages there, which makes them the chat's admin."""
    person = DISCORD.user_id(user.id)
    if not in_guild:
        return Speaker.alone(person)
    chat = chat_of(DISCORD.name, channel_id)
    author = user.display_name
    return group_speaker(person, chat, mode, author=author, is_chat_admin=may_moderate)


class Locales:
    """The users' languages, as their last interaction showed them."""

    def __init__(self, remembered: int = LOCALES_REMEMBERED) -> None:
        self._remembered = remembered
        self._by_user: OrderedDict[int, str] = OrderedDict()

    def of_interaction(self, interaction: discord.Interaction[discord.Client]) -> str:
        """The user's client language, remembered for their plain messages."""
        locale = normalize_locale(interaction.locale.value)
        self._by_user[interaction.user.id] = locale
        self._by_user.move_to_end(interaction.user.id)
        if len(self._by_user) > self._remembered:
            self._by_user.popitem(last=False)
        return locale

    def of_message(self, message: discord.Message) -> str:
        """The author's remembered language, else the guild's, else English."""
        known = self._by_user.get(message.author.id)
        if known is not None:
            return known
        if message.guild is not None:
            return normalize_locale(message.guild.preferred_locale.value)
        return ENGLISH
