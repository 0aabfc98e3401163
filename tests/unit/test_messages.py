"""The message catalogue: both languages complete, every core error has a sentence."""

from __future__ import annotations

from typing import get_args

import pytest

from core import errors
from core.conversation import Notice
from core.errors import (
    ChatbridgeError,
    DailyBudgetExhausted,
    MessageTooLong,
    ModelCannotReadImages,
    ModelRateLimited,
    RateLimited,
    TranscriptionEmpty,
    TranscriptionFailed,
    TranscriptionReason,
)
from core.messages import (
    _TEXTS,
    COMMAND_DESCRIPTIONS,
    ENGLISH,
    OPTION_DESCRIPTIONS,
    PORTUGUESE,
    describe,
    duration,
    file_size,
    normalize_locale,
    notice_text,
    text,
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
    if cls in (ChatbridgeError, errors.ConfigError, errors.InvalidBackup):
        return  # not shown to chat users: config errors stop the service before it serves,
        # a bad backup file stops `chatbridge restore`
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


@pytest.mark.parametrize("locale", [ENGLISH, PORTUGUESE])
def test_a_model_that_cannot_read_images_is_named_with_a_model_that_can(locale: str):
    said = describe(ModelCannotReadImages(model="a/text-only", suggestion="b/sees"), locale)
    assert "`a/text-only`" in said
    assert "/model b/sees" in said


@pytest.mark.parametrize("locale", [ENGLISH, PORTUGUESE])
def test_a_model_that_cannot_read_images_without_a_suggestion_points_to_model(locale: str):
    said = describe(ModelCannotReadImages(model="a/text-only"), locale)
    assert "`a/text-only`" in said
    assert "/model." in said
    assert "None" not in said


def test_an_unknown_error_code_gets_the_generic_sentence():
    assert "went wrong" in describe(ChatbridgeError(), ENGLISH)


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0.2, "1 s"), (1, "1 s"), (59, "59 s"), (59.1, "1 min"), (60, "1 min"), (61, "2 min"),
     (3599, "1 h"), (3600, "1 h"), (3601, "1 h 1 min"), (7199, "2 h"), (18_001, "5 h 1 min"),
     (86_400, "24 h")],
)  # fmt: skip
def test_a_wait_is_said_in_the_largest_units_never_shorter_than_it_is(seconds: float, said: str):
    assert duration(ENGLISH, seconds) == said


@pytest.mark.parametrize(
    ("seconds", "said"), [(1, "1 s"), (59, "59 s"), (60, "1 min"), (90, "90 s"), (3600, "1 h"),
                          (5400, "90 min")],
)  # fmt: skip
def test_a_window_is_said_exactly(seconds: int, said: str):
    assert duration(ENGLISH, seconds, is_exact=True) == said


def test_turn_limit_refusals_say_the_limit_and_when_to_try_again():
    too_fast = RateLimited(retry_after=37, limit=20, window_seconds=60)
    assert describe(too_fast, ENGLISH) == (
        "You're sending messages too fast: at most 20 messages in 1 min. Try again in 37 s."
    )
    assert describe(too_fast, PORTUGUESE) == (
        "Você está mandando mensagens rápido demais: no máximo 20 mensagens em 1 min. "
        "Tente de novo em 37 s."
    )
    over_budget = DailyBudgetExhausted(retry_after=5 * 3600 + 1, budget=50_000)
    assert describe(over_budget, ENGLISH).endswith("at midnight UTC, in 5 h 1 min.")
    assert describe(over_budget, PORTUGUESE).endswith("meia-noite UTC, daqui a 5 h 1 min.")
    assert "50000" in describe(over_budget, PORTUGUESE)


@pytest.mark.parametrize(
    ("locale", "seconds", "said"),
    [(ENGLISH, 3600, "after 1 h without messages"), (ENGLISH, 90, "after 90 s without"),
     (PORTUGUESE, 1800, "após 30 min sem mensagens")],
)  # fmt: skip
def test_an_expired_session_is_said_with_how_long_it_went_without_messages(
    locale: str, seconds: int, said: str
):
    sentence = notice_text(locale, Notice.PREVIOUS_SESSION_EXPIRED, expired_after=seconds)
    assert said in sentence
    assert "/sessions" in sentence


@pytest.mark.parametrize("locale", [ENGLISH, PORTUGUESE])
def test_every_notice_has_a_sentence_in_both_languages(locale: str):
    sentences = {notice_text(locale, notice, expired_after=60) for notice in Notice}
    assert len(sentences) == len(Notice)


# A failed transcription: told by reason, in the variant its parameters allow

TRANSCRIPTION_FAILURES = {
    "not_configured": TranscriptionFailed(reason="not_configured"),
    "too_large": TranscriptionFailed(reason="too_large"),
    "too_large_sized": TranscriptionFailed(reason="too_large", size=30_000_000, limit=25_000_000),
    "unsupported_format": TranscriptionFailed(reason="unsupported_format", media_type="video/mp4"),
    "rejected": TranscriptionFailed(reason="rejected", status=402),
    "rate_limited": TranscriptionFailed(reason="rate_limited"),
    "rate_limited_wait": TranscriptionFailed(reason="rate_limited", retry_after=11.6),
    "unavailable": TranscriptionFailed(reason="unavailable"),
    "unavailable_wait": TranscriptionFailed(reason="unavailable", retry_after=30),
    "timeout": TranscriptionFailed(reason="timeout"),
    "empty": TranscriptionEmpty(),
}


def test_every_transcription_reason_is_among_the_failures_checked_here():
    assert set(get_args(TranscriptionReason)) <= set(TRANSCRIPTION_FAILURES)


@pytest.mark.parametrize("locale", [ENGLISH, PORTUGUESE])
@pytest.mark.parametrize("variant", TRANSCRIPTION_FAILURES)
def test_every_transcription_failure_has_its_own_sentence_saying_nothing_was_kept(
    variant: str, locale: str
):
    sentence = describe(TRANSCRIPTION_FAILURES[variant], locale)

    assert sentence == text(locale, f"transcription_{variant}", **_shown_params(variant, locale))
    assert "{" not in sentence
    assert ("nothing was saved" if locale == ENGLISH else "nada foi salvo") in sentence.lower()


def _shown_params(variant: str, locale: str) -> dict[str, object]:
    error = TRANSCRIPTION_FAILURES[variant]
    shown = dict(error.params)
    if variant == "too_large_sized":
        shown.update(size="30 MB", limit="25 MB")
    if error.retry_after is not None:
        shown["wait"] = duration(locale, error.retry_after)
    return shown


@pytest.mark.parametrize(
    ("locale", "size", "limit", "said"),
    [(ENGLISH, 25_000_001, 25_000_000, "Your audio is 25.1 MB; I can transcribe at most 25 MB."),
     (ENGLISH, 10_000_000, 9_999_999, "Your audio is 10 MB; I can transcribe at most 9.9 MB."),
     (PORTUGUESE, 25_000_001, 25_000_000, "Seu áudio tem 25,1 MB; consigo transcrever no "
      "máximo 25 MB.")],
)  # fmt: skip
def test_audio_over_the_limit_is_said_rounded_up_and_never_equal_to_the_limit(
    locale: str, size: int, limit: int, said: str
):
    error = TranscriptionFailed(reason="too_large", size=size, limit=limit)
    assert describe(error, locale).startswith(said)


def test_a_transcription_failure_says_the_wait_and_the_refused_type():
    assert "in 12 s" in describe(TRANSCRIPTION_FAILURES["rate_limited_wait"], ENGLISH)
    assert "video/mp4" in describe(TRANSCRIPTION_FAILURES["unsupported_format"], PORTUGUESE)
    assert "(402)" in describe(TRANSCRIPTION_FAILURES["rejected"], ENGLISH)


@pytest.mark.parametrize("locale", [ENGLISH, PORTUGUESE])
def test_every_attachment_problem_has_its_own_sentence_in_both_languages(locale: str):
    sentences = {
        describe(errors.InvalidAttachment(reason=problem), locale)
        for problem in errors.AttachmentProblem
    }
    generic = _TEXTS[locale]["invalid_attachment"]
    assert len(sentences) == len(errors.AttachmentProblem)
    assert generic not in sentences


def test_an_attachment_problem_logs_as_an_english_sentence_without_the_users_words():
    error = errors.InvalidAttachment(reason=errors.AttachmentProblem.ENCRYPTED)
    assert str(error) == "The attachment cannot be used: the PDF is protected by a password."
    assert error.code == "invalid_attachment"
    assert isinstance(error, errors.InputError)
    no_text = errors.DocumentHasNoText(name="secret-plans.pdf")
    assert "secret-plans" not in str(no_text)
    assert "secret-plans.pdf" in describe(no_text, ENGLISH)
    assert "secret-plans.pdf" in describe(no_text, PORTUGUESE)


@pytest.mark.parametrize(
    ("size", "limit", "english", "portuguese"),
    [(10_000_001, 10_000_000, "That file is 10.1 MB; the most I take in one file is 10 MB.",
      "Esse arquivo tem 10,1 MB; o máximo que aceito num arquivo é 10 MB."),
     (10 * 2**20 + 1, 10 * 2**20, "That file is 10.5 MB; the most I take in one file is 10.4 MB.",
      "Esse arquivo tem 10,5 MB; o máximo que aceito num arquivo é 10,4 MB.")],
)  # fmt: skip
def test_a_file_too_large_is_said_in_mb_rounded_so_it_never_looks_within_the_limit(
    size: int, limit: int, english: str, portuguese: str
):
    error = errors.FileTooLarge(size=size, limit=limit)
    assert describe(error, ENGLISH) == english
    assert describe(error, PORTUGUESE) == portuguese
    assert str(error) == f"The file has {size} bytes; one file may have {limit}."


@pytest.mark.parametrize(
    ("size", "english", "portuguese"),
    [
        (0, "0 B", "0 B"),
        (999, "999 B", "999 B"),
        (1_000, "1 kB", "1 kB"),
        (1_099, "1 kB", "1 kB"),
        (182_456, "182.4 kB", "182,4 kB"),
        (999_999, "999.9 kB", "999,9 kB"),
        (1_000_000, "1 MB", "1 MB"),
        (8_388_608, "8.3 MB", "8,3 MB"),
    ],
)
def test_a_file_size_is_said_in_the_largest_decimal_unit_cut_to_a_tenth(
    size: int, english: str, portuguese: str
):
    assert (file_size(ENGLISH, size), file_size(PORTUGUESE, size)) == (english, portuguese)
