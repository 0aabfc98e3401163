"""The message catalogue: both languages complete, every core error has a sentence."""

from __future__ import annotations

import pytest

from core import errors
from core.errors import ChatbridgeError, MessageTooLong, ModelRateLimited
from core.messages import (
    _TEXTS,
    COMMAND_DESCRIPTIONS,
    ENGLISH,
    OPTION_DESCRIPTIONS,
    PORTUGUESE,
    describe,
    normalize_locale,
)


def all_error_classes() -> list[type[ChatbridgeError]]:
    found, pending = [], [ChatbridgeError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_both_languages_have_the_same_sentences():
    assert _TEXTS[ENGLISH].keys() == _TEXTS[PORTUGUESE].keys()
    assert COMMAND_DESCRIPTIONS[ENGLISH].keys() == COMMAND_DESCRIPTIONS[PORTUGUESE].keys()
    assert OPTION_DESCRIPTIONS[ENGLISH].keys() == OPTION_DESCRIPTIONS[PORTUGUESE].keys()


@pytest.mark.parametrize("catalogue", [COMMAND_DESCRIPTIONS, OPTION_DESCRIPTIONS])
def test_descriptions_fit_discords_limit_of_100_characters(catalogue: dict[str, dict[str, str]]):
    for descriptions in catalogue.values():
        assert all(1 <= len(about) <= 100 for about in descriptions.values())


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda cls: cls.__name__)
def test_every_user_facing_error_has_a_sentence_in_both_languages(cls: type[ChatbridgeError]):
    if cls in (ChatbridgeError, errors.ConfigError):
        return  # not shown to chat users: config errors stop the service before it serves
    assert cls.code in _TEXTS[ENGLISH], cls.code


@pytest.mark.parametrize(
    ("code", "expected"),
    [("pt", PORTUGUESE), ("pt-br", PORTUGUESE), ("pt_BR.UTF-8", PORTUGUESE), ("en-US", ENGLISH),
     ("de", ENGLISH), ("", ENGLISH), (None, ENGLISH)],
)  # fmt: skip
def test_platform_language_codes_map_to_a_language_we_speak(code: str | None, expected: str):
    assert normalize_locale(code) == expected


def test_errors_are_described_with_their_parameters():
    assert "4001" in describe(MessageTooLong(length=4001, limit=4000), ENGLISH)
    assert "4000" in describe(MessageTooLong(length=4001, limit=4000), PORTUGUESE)
    assert "12 s" in describe(ModelRateLimited(retry_after=11.6), ENGLISH)
    assert "minute" in describe(ModelRateLimited(retry_after=None), ENGLISH)


def test_an_unknown_error_code_gets_the_generic_sentence():
    assert "went wrong" in describe(ChatbridgeError(), ENGLISH)
