"""The HTTP API's statuses and sentences for core errors, at the edge."""

from __future__ import annotations

from bots.http.errors import api_message, status_of
from core.errors import ModelCannotReadImages


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
