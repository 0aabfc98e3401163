"""Models' input modalities read from OpenRouter's list, and where a message with images goes."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import InputError, ModelCannotReadImages
from core.llm.modalities import (
    UNKNOWN,
    ImageRoute,
    Modality,
    ModelModalities,
    route_images,
)
from core.llm.models import decoded, encoded

SEES = "openai/gpt-4o-mini"
BLIND = "meta-llama/llama-3.1-8b-instruct"
VISION = "anthropic/claude-3.5-haiku"


def entry(model_id: str, inputs: list[str], prompt: str = "0.000001") -> dict[str, Any]:
    """One entry of `data` as OpenRouter lists it (the fields this reads, and a few beside)."""
    return {
        "id": model_id,
        "canonical_slug": model_id,
        "name": model_id,
        "context_length": 128000,
        "architecture": {
            "modality": "+".join(inputs) + "->text",
            "input_modalities": inputs,
            "output_modalities": ["text"],
            "tokenizer": "Other",
            "instruct_type": None,
        },
        "pricing": {"prompt": prompt, "completion": prompt, "request": "0", "image": "0"},
    }


@pytest.fixture
def catalog() -> ModelModalities:
    return ModelModalities.from_entries(
        [
            entry(SEES, ["text", "image", "file"], "0.00000015"),
            entry(BLIND, ["text"], "0.00000002"),
            entry(VISION, ["text", "image"], "0.0000008"),
            entry("meta-llama/llama-3.2-90b-vision-instruct", ["text", "image"], "0.0000012"),
            entry("meta-llama/llama-3.2-11b-vision-instruct", ["text", "image"], "0.000000049"),
            entry("meta-llama/llama-4-scout:free", ["text", "image"], "0"),
            entry("openrouter/auto", ["text", "image"], "-1"),
            entry("google/gemini-2.0-flash-001", ["text", "image", "file", "audio", "video"]),
        ]
    )


def test_a_models_inputs_are_read_from_its_architecture(catalog: ModelModalities):
    assert catalog.accepts(SEES, Modality.IMAGE) is True
    assert catalog.accepts(SEES, Modality.FILE) is True
    assert catalog.accepts(SEES, Modality.AUDIO) is False
    assert catalog.accepts(BLIND, Modality.IMAGE) is False
    assert catalog.accepts(BLIND, Modality.TEXT) is True
    assert catalog.accepts("google/gemini-2.0-flash-001", Modality.AUDIO) is True


def test_a_model_the_list_does_not_name_is_unknown(catalog: ModelModalities):
    assert catalog.accepts("someone/new-model", Modality.IMAGE) is None
    assert UNKNOWN.accepts(SEES, Modality.IMAGE) is None
    assert not UNKNOWN.is_known


def test_a_variant_the_list_does_not_name_reads_what_its_model_reads(catalog: ModelModalities):
    assert catalog.accepts(f"{SEES}:nitro", Modality.IMAGE) is True
    assert catalog.accepts(f"{BLIND}:floor", Modality.IMAGE) is False
    assert catalog.accepts("meta-llama/llama-4-scout:free", Modality.IMAGE) is True


def test_entries_without_an_id_or_input_modalities_are_left_out_not_refused():
    catalog = ModelModalities.from_entries(
        [
            {"id": "a/no-architecture"},
            {"id": "b/no-inputs", "architecture": {"modality": "text->text"}},
            {"architecture": {"input_modalities": ["text", "image"]}},
            "not an object",
            entry("c/listed", ["text"]),
        ]
    )
    assert set(catalog.models) == {"c/listed"}
    assert catalog.accepts("a/no-architecture", Modality.IMAGE) is None


def test_a_model_that_reads_images_keeps_its_sessions_model(catalog: ModelModalities):
    route = route_images(SEES, catalog, vision_model=VISION)
    assert route == ImageRoute(SEES, is_vision_model=False)


@pytest.mark.parametrize("vision_model", [None, VISION])
def test_an_unknown_model_is_given_the_images_and_openrouter_decides(
    catalog: ModelModalities, vision_model: str | None
):
    assert route_images("someone/new-model", catalog, vision_model=vision_model) == ImageRoute(
        "someone/new-model", is_vision_model=False
    )
    assert route_images(BLIND, UNKNOWN, vision_model=vision_model) == ImageRoute(
        BLIND, is_vision_model=False
    )


def test_a_model_that_reads_no_images_sends_them_to_the_vision_model(catalog: ModelModalities):
    route = route_images(BLIND, catalog, vision_model=VISION)
    assert route == ImageRoute(VISION, is_vision_model=True)


def test_a_vision_model_the_list_does_not_name_is_tried(catalog: ModelModalities):
    route = route_images(BLIND, catalog, vision_model="someone/new-vision")
    assert route == ImageRoute("someone/new-vision", is_vision_model=True)


def test_without_a_vision_model_the_images_are_refused_suggesting_the_preferred_model(
    catalog: ModelModalities,
):
    with pytest.raises(ModelCannotReadImages) as refused:
        route_images(BLIND, catalog, vision_model=None, preferred=(BLIND, SEES))
    assert isinstance(refused.value, InputError)
    assert refused.value.code == "model_cannot_read_images"
    assert refused.value.params == {"model": BLIND, "suggestion": SEES}


@pytest.mark.parametrize("vision_model", [BLIND, "meta-llama/llama-3.1-8b-instruct:nitro"])
def test_a_vision_model_that_reads_no_images_is_not_used(
    catalog: ModelModalities, vision_model: str
):
    with pytest.raises(ModelCannotReadImages) as refused:
        route_images(BLIND, catalog, vision_model=vision_model)
    assert refused.value.model == BLIND


def test_the_suggestion_is_the_cheapest_model_of_the_same_vendor_at_a_fixed_price(
    catalog: ModelModalities,
):
    with pytest.raises(ModelCannotReadImages) as refused:
        route_images(BLIND, catalog, vision_model=None)
    # The free variant is cheaper but rate limited; it is not suggested.
    assert refused.value.suggestion == "meta-llama/llama-3.2-11b-vision-instruct"


def test_the_suggestion_is_the_cheapest_of_all_when_the_vendor_has_none(
    catalog: ModelModalities,
):
    catalog = ModelModalities.from_entries(
        [entry("x/blind", ["text"]), *(entry(m, ["text", "image"], p) for m, p in (
            ("y/dear", "0.00001"), ("z/cheap", "0.0000001"), ("openrouter/auto", "-1"),
        ))]
    )  # fmt: skip
    with pytest.raises(ModelCannotReadImages) as refused:
        route_images("x/blind", catalog, vision_model=None)
    assert refused.value.suggestion == "z/cheap"


def test_without_any_model_that_reads_images_there_is_no_suggestion():
    catalog = ModelModalities.from_entries([entry(BLIND, ["text"]), entry("x/y", ["text"])])
    with pytest.raises(ModelCannotReadImages) as refused:
        route_images(BLIND, catalog, vision_model=None, preferred=("x/y",))
    assert refused.value.suggestion is None


def test_a_stored_list_reads_back_as_it_was(catalog: ModelModalities):
    back = decoded(encoded(catalog))
    assert back is not None
    assert back.models == catalog.models
    assert back.models["openrouter/auto"].prompt_price is None


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not json",
        "[]",
        '{"v": 3, "models": {}}',
        '{"v": 2}',
        '{"v": 2, "models": {"a/b": 3}}',
        '{"v": 1, "models": {"a/b": ["text", null]}}',  # format 1: no context length
    ],
)
def test_a_stored_value_of_another_shape_reads_as_no_copy(stored: str):
    assert decoded(stored) is None
