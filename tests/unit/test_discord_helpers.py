"""The Discord front's pure parts: command-list comparison, typed commands, parts and footer."""

from __future__ import annotations

from datetime import UTC, datetime

from bots.discord.commands import _signature, _typed
from bots.discord.front import _without_mention
from bots.discord.stream import PART_LIMIT, discord_parts, footer
from core.conversation import Message, Role, Usage

OURS = [
    {
        "name": "switch",
        "description": "Switch",
        "type": 1,
        "nsfw": False,
        "options": [
            {"name": "session", "description": "Which", "type": 3, "required": True,
             "autocomplete": True, "max_length": 100, "min_length": 1},
        ],
        "description_localizations": {"pt-BR": "Trocar"},
        "name_localizations": {},
    },
    {"name": "help", "description": "Help", "type": 1, "options": []},
]  # fmt: skip
# As Discord answers GET .../commands?with_localizations=true: ids, versions and defaults added.
DISCORDS = [
    {"id": "2", "application_id": "9", "version": "7", "name": "help", "description": "Help",
     "type": 1, "default_member_permissions": None, "dm_permission": True, "contexts": None,
     "integration_types": [0], "nsfw": False, "name_localizations": None,
     "description_localizations": None},
    {"id": "1", "application_id": "9", "version": "7", "name": "switch", "description": "Switch",
     "type": 1, "default_member_permissions": None, "dm_permission": True,
     "description_localizations": {"pt-BR": "Trocar"}, "name_localizations": None,
     "options": [{"type": 3, "name": "session", "description": "Which", "required": True,
                  "autocomplete": True, "max_length": 100, "min_length": 1,
                  "name_localizations": None, "description_localizations": None}]},
]  # fmt: skip


def test_the_same_commands_compare_equal_whatever_discord_adds_or_reorders():
    assert _signature(OURS) == _signature(DISCORDS)


def test_a_changed_description_or_option_is_a_difference():
    changed = [dict(OURS[0], description="Switch conversations"), OURS[1]]
    assert _signature(changed) != _signature(DISCORDS)
    fewer = [dict(OURS[0], options=[]), OURS[1]]
    assert _signature(fewer) != _signature(DISCORDS)
    assert _signature(OURS[:1]) != _signature(DISCORDS)


def test_an_option_becomes_the_command_as_typed_on_one_line():
    assert _typed("new", None) == "/new"
    assert _typed("new", "Trip  to\nLisbon ") == "/new Trip to Lisbon"
    assert _typed("model", "a/b") == "/model a/b"


def test_the_bots_mention_is_removed_in_both_forms():
    assert _without_mention("<@42> hi <@!42>", 42) == "hi"
    assert _without_mention("<@43> hi", 42) == "<@43> hi"


def test_parts_fit_discord_and_blank_parts_are_dropped():
    parts = discord_parts("word " * 1000)
    assert len(parts) == 3
    assert all(len(part) <= PART_LIMIT for part in parts)
    assert discord_parts("  \n ") == []


def test_the_footer_names_the_model_and_the_tokens():
    reply = Message("m", Role.ASSISTANT, "hi", "a/b", datetime.now(UTC), Usage(12, 345))
    assert footer(reply) == "-# a/b · 12 → 345 tokens"
    assert footer(Message("m", Role.ASSISTANT, "hi", "a/b", datetime.now(UTC))) == "-# a/b"
    assert footer(None) == ""
