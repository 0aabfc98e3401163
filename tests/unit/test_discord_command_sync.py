"""When the slash commands are published: only when what we define differs from Discord's list.

Every PUT of a command list counts against a daily limit, so an unchanged list must compare
equal however Discord spells it, and any change we made must not.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bots.discord.commands import _signature

HISTORY: dict[str, Any] = {
    "name": "history",
    "description": "Recent messages",
    "type": 1,
    "options": [
        {"name": "n", "description": "How many", "type": 4, "required": False,
         "min_value": 1, "max_value": 50},
    ],
    "description_localizations": {"pt-BR": "Mensagens recentes"},
}  # fmt: skip


def changed(path: list[str | int], value: object) -> dict[str, Any]:
    command = copy.deepcopy(HISTORY)
    place: Any = command
    for key in path[:-1]:
        place = place[key]
    place[path[-1]] = value
    return command


@pytest.mark.parametrize(
    ("key", "discords_spelling"),
    [
        ("nsfw", False),
        ("name_localizations", None),
        ("name_localizations", {}),
        ("autocomplete", None),
    ],
)
def test_an_unset_field_equals_discords_empty_or_false_spelling_of_it(
    key: str, discords_spelling: object
):
    assert _signature([HISTORY]) == _signature([changed([key], discords_spelling)])


def test_the_fields_discord_adds_of_its_own_are_ignored():
    discords = dict(
        HISTORY, id="1", application_id="9", version="7", dm_permission=True,
        default_member_permissions=None, contexts=None, integration_types=[0],
    )  # fmt: skip

    assert _signature([HISTORY]) == _signature([discords])


def test_the_order_of_the_commands_does_not_matter():
    help_command = {"name": "help", "description": "Help", "type": 1}

    assert _signature([HISTORY, help_command]) == _signature([help_command, HISTORY])


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["description"], "Recent messages of this conversation"),
        (["type"], 2),
        pytest.param(
            ["description_localizations", "pt-BR"],
            "Últimas mensagens",
            marks=pytest.mark.xfail(
                strict=True,
                reason="known: _signature keeps only command keys, also inside the "
                "localization dicts, so a changed translation is not seen as a change",
            ),
        ),
        (["options", 0, "required"], True),
        (["options", 0, "max_value"], 49),
        (["options", 0, "max_value"], 51),
        (["options", 0, "min_value"], 2),
        (["options", 0, "type"], 3),
    ],
)
def test_a_change_to_what_we_define_is_a_difference(path: list[str | int], value: object):
    assert _signature([HISTORY]) != _signature([changed(path, value)])


def test_a_command_more_or_less_is_a_difference():
    help_command = {"name": "help", "description": "Help", "type": 1}

    assert _signature([HISTORY]) != _signature([HISTORY, help_command])
    assert _signature([HISTORY]) != _signature([])
