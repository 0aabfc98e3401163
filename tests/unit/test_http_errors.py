"""The HTTP API's statuses and sentences for core errors, at the edge."""

from __future__ import annotations

import json
from typing import get_args

import pytest

from bots.http.errors import (
    STATUS_BY_TRANSCRIPTION_REASON,
    api_message,
    core_error_response,
    status_of,
)
from core import errors
from core.errors import (
    ModelCannotReadImages,
    TranscriptionEmpty,
    TranscriptionFailed,
    TranscriptionReason,
)


@pytest.mark.parametrize(
    ("reason", "status"),
    [("not_configured", 503), ("too_large", 413), ("unsupported_format", 415),
     ("rejected", 502), ("rate_limited", 429), ("unavailable", 503), ("timeout", 504),
     ("empty", 422)],
)  # fmt: skip
def test_a_failed_transcription_answers_the_status_of_its_reason(reason: str, status: int):
    assert status_of(TranscriptionFailed(reason=reason)) == status  # type: ignore[arg-type]


def test_every_transcription_reason_has_a_status():
    assert set(STATUS_BY_TRANSCRIPTION_REASON) == set(get_args(TranscriptionReason))


def test_no_words_heard_is_a_422_transcription_empty():
    response = core_error_response(TranscriptionEmpty())

    assert response.status == 422
    assert response.text is not None
    assert '"code": "transcription_empty"' in response.text


@pytest.mark.parametrize(
    ("error", "retry_after"),
    [(TranscriptionFailed(reason="rate_limited", retry_after=2.2), "3"),
     (TranscriptionFailed(reason="rate_limited"), "60"),
     (TranscriptionFailed(reason="unavailable", retry_after=30), "30"),
     (TranscriptionFailed(reason="unavailable"), None),
     (TranscriptionFailed(reason="timeout"), None)],
)  # fmt: skip
def test_a_failed_transcription_says_when_to_retry_when_that_is_known(
    error: TranscriptionFailed, retry_after: str | None
):
    response = core_error_response(error)

    assert response.headers.get("Retry-After") == retry_after
    assert '"code": "transcription_failed"' in (response.text or "")


def test_a_model_that_cannot_read_images_is_422_naming_the_model_and_one_that_can():
    error = ModelCannotReadImages(model="a/text-only", suggestion="b/sees")
    assert status_of(error) == 422
    assert error.code == "model_cannot_read_images"
    message = api_message(error)
    assert "a/text-only cannot read images; b/sees can." in message
    assert "modelId" in message


def test_a_model_that_cannot_read_images_without_a_suggestion_names_only_the_model():
    message = api_message(ModelCannotReadImages(model="a/text-only"))
    assert message.startswith("The model a/text-only cannot read images.")
    assert "None" not in message


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidAttachment(reason=errors.AttachmentProblem.UNKNOWN_TYPE), 415),
        (errors.InvalidAttachment(reason=errors.AttachmentProblem.DAMAGED), 422),
        (errors.InvalidAttachment(reason=errors.AttachmentProblem.NOT_AN_IMAGE), 422),
        (errors.InvalidAttachment(reason=errors.AttachmentProblem.ENCRYPTED), 422),
        (errors.DocumentHasNoText(name="scan.pdf"), 422),
        (errors.FileTooLarge(size=11, limit=10), 413),
    ],
    ids=lambda value: getattr(value, "params", {}).get("reason", getattr(value, "code", value)),
)
def test_attachment_errors_answer_with_their_status_code_and_sentence(
    error: errors.ChatbridgeError, status: int
):
    response = core_error_response(error)
    assert response.status == status
    assert response.text is not None
    assert json.loads(response.text) == {"error": {"code": error.code, "message": str(error)}}
