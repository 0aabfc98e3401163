"""The Discord front's memory of its users' languages, and the sessions it suggests as they type.

Interactions and messages are stand-ins carrying only the fields these read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from bots.discord.interactions import AUTOCOMPLETE_LIMIT, CHOICE_NAME_LIMIT, _session_choices
from bots.discord.users import LOCALES_REMEMBERED, Locales
from core.conversation import Session
from core.messages import ENGLISH, PORTUGUESE
from core.sessions.store import SessionList


def interaction(user_id: int, locale: str) -> SimpleNamespace:
    return SimpleNamespace(user=SimpleNamespace(id=user_id), locale=SimpleNamespace(value=locale))


def message(author_id: int, guild_locale: str | None = None) -> SimpleNamespace:
    guild = None if guild_locale is None else SimpleNamespace(
        preferred_locale=SimpleNamespace(value=guild_locale)
    )  # fmt: skip
    return SimpleNamespace(author=SimpleNamespace(id=author_id), guild=guild)


def session(number: int, title: str) -> Session:
    now = datetime.now(UTC)
    return Session(f"s{number}", "discord:1", title, "a/b", now, now, 0)


def test_a_plain_message_speaks_the_language_of_its_authors_last_interaction():
    locales = Locales()

    assert locales.of_interaction(interaction(1, "pt-BR")) == PORTUGUESE
    assert locales.of_message(message(1, guild_locale="en-US")) == PORTUGUESE
    assert locales.of_interaction(interaction(1, "en-GB")) == ENGLISH
    assert locales.of_message(message(1)) == ENGLISH


def test_an_unknown_author_gets_the_guilds_language_in_a_guild_and_english_in_a_dm():
    locales = Locales()

    assert locales.of_message(message(2, guild_locale="pt-BR")) == PORTUGUESE
    assert locales.of_message(message(2)) == ENGLISH


def test_the_memory_keeps_as_many_users_as_it_may_and_forgets_the_least_recent_first():
    locales = Locales(remembered=2)
    locales.of_interaction(interaction(1, "pt-BR"))
    locales.of_interaction(interaction(2, "pt-BR"))
    assert locales.of_message(message(1)) == PORTUGUESE  # at the limit: both kept

    locales.of_interaction(interaction(1, "pt-BR"))  # 1 is now the most recent
    locales.of_interaction(interaction(3, "pt-BR"))  # one above: 2 goes

    assert locales.of_message(message(1)) == PORTUGUESE
    assert locales.of_message(message(2)) == ENGLISH
    assert locales.of_message(message(3)) == PORTUGUESE
    assert LOCALES_REMEMBERED == 10_000


def test_suggestions_match_the_title_in_any_case_or_the_sessions_number_and_mark_the_active():
    listing = SessionList((session(1, "Trip to Lisbon"), session(2, "Recipes")), active_id="s2")

    by_title = _session_choices(listing, " lisbon ", ENGLISH)
    by_number = _session_choices(listing, "2", ENGLISH)

    assert [(c.name, c.value) for c in by_title] == [("1. Trip to Lisbon", "s1")]
    assert [(c.name, c.value) for c in by_number] == [("▶ 2. Recipes", "s2")]
    assert len(_session_choices(listing, "", ENGLISH)) == 2


def test_suggestions_stop_at_discords_limits_of_count_and_length():
    many = tuple(session(n, "x" * 200) for n in range(1, AUTOCOMPLETE_LIMIT + 2))

    choices = _session_choices(SessionList(many, active_id=None), "", ENGLISH)

    assert len(choices) == AUTOCOMPLETE_LIMIT
    assert all(len(choice.name) == CHOICE_NAME_LIMIT for choice in choices)
    assert choices[0].name.endswith("…")
