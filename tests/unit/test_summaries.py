"""When older messages need summarising (core/summaries.py, `fold_point`), and how a request is
sized to a model (core/tokens.py, `request_size`): pure decisions, no I/O."""

from __future__ import annotations

import pytest

from core.conversation import Role
from core.sessions.codec import ContextEntry
from core.sessions.summary_store import SummarySource
from core.summaries import (
    FOLDED_MESSAGE_CHARACTERS,
    TRIM_AHEAD_MESSAGES,
    fold_point,
    summary_request,
)
from core.tokens import DEFAULT_CONTEXT_TOKENS, TokenCounter, count_tokens, request_size

MAX = 100


def point(**changes: object) -> int | None:
    facts: dict[str, object] = {
        "covered": 0, "sent": list(range(1, 11)), "answer_seq": 11, "is_cut": False,
        "stored_count": 11, "max_messages": MAX,
    }  # fmt: skip
    facts.update(changes)
    return fold_point(**facts)  # type: ignore[arg-type]


def test_nothing_is_summarised_while_everything_fits():
    assert point() is None


def test_messages_left_out_fold_everything_older_than_the_newest_half_of_what_was_sent():
    # Sent 5..10, the answer is 11: the newest half of the seven, rounded down (9..11), keep
    # their words.
    assert point(sent=[5, 6, 7, 8, 9, 10], is_cut=True) == 8


def test_a_single_message_that_fills_the_context_folds_everything_before_it():
    assert point(sent=[10], is_cut=True) == 9


def test_what_a_summary_already_stands_in_for_is_not_summarised_again():
    assert point(covered=9, sent=[10], is_cut=True) is None
    assert point(covered=4, sent=[5, 6, 7, 8, 9, 10], is_cut=True) == 8


@pytest.mark.parametrize(
    ("stored", "needed"),
    [(MAX - TRIM_AHEAD_MESSAGES - 1, False), (MAX - TRIM_AHEAD_MESSAGES, True), (MAX, True)],
    ids=["below", "at", "above"],
)
def test_messages_the_next_trims_take_are_summarised_ahead_of_them(stored: int, needed: bool):
    answer = 500
    sent = list(range(answer - stored + 1, answer))
    up_to = point(sent=sent, answer_seq=answer, stored_count=stored)
    if not needed:
        assert up_to is None
        return
    assert up_to is not None
    # The newest half keep their words, at most half of MAX_MESSAGES_PER_SESSION.
    assert answer - up_to == min(stored // 2, MAX // 2)


def test_near_the_trim_a_summary_that_covers_the_oldest_is_enough():
    answer, stored = 500, MAX
    oldest = answer - stored + 1
    sent = list(range(oldest, answer))
    assert point(covered=oldest + TRIM_AHEAD_MESSAGES, sent=sent, answer_seq=answer,
                 stored_count=stored) is None  # fmt: skip


@pytest.mark.parametrize(
    ("configured", "model_context", "expected"),
    [
        (None, None, (DEFAULT_CONTEXT_TOKENS, 4096)),
        (8000, None, (8000, 4096)),
        (None, 128_000, (DEFAULT_CONTEXT_TOKENS, 4096)),
        # 10% spare: 7,372 usable; the answer keeps 4,096 if half of that allows, else half.
        (None, 8192, (7372 - 3686, 3686)),
        (None, 20_000, (18_000 - 4096, 4096)),
        (100_000, 20_000, (18_000 - 4096, 4096)),
    ],
)
def test_a_request_is_sized_within_the_models_context(
    configured: int | None, model_context: int | None, expected: tuple[int, int]
):
    size = request_size(configured, model_context, 4096)
    assert (size.context_tokens, size.max_tokens) == expected
    if model_context is not None:
        assert size.context_tokens + size.max_tokens <= model_context


def test_the_counter_counts_a_text_once_and_forgets_the_oldest():
    counter = TokenCounter(capacity=2)
    assert counter.count("hello world") == count_tokens("hello world") == 2
    counter.count("one")
    counter.count("two")
    assert len(counter._counts) == 2


def test_the_summary_request_carries_the_summary_so_far_and_each_message_cut_to_its_limit():
    long = "x" * (FOLDED_MESSAGE_CHARACTERS + 10)
    source = SummarySource(
        "Ana likes tea.",
        3,
        (ContextEntry(4, Role.USER, "My cat is Tom."), ContextEntry(5, Role.ASSISTANT, long)),
    )
    system, user = summary_request(source)
    assert system.role == "system"
    assert "Ana likes tea." in str(user.content)
    assert "User: My cat is Tom." in str(user.content)
    assert "x" * FOLDED_MESSAGE_CHARACTERS + " […]" in str(user.content)
    assert "x" * (FOLDED_MESSAGE_CHARACTERS + 1) not in str(user.content)
