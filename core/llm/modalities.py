"""Which inputs each model reads, and where a message with images goes: pure, no I/O.

`ModelModalities` is one reading of OpenRouter's models list (`GET /models`: each entry's `id`,
`architecture.input_modalities`, e.g. `["text", "image", "file"]`, and `context_length`, which
sizes a turn's request: core/turn.py); core/llm/models.py
keeps one fresh, shared through Redis. `route_images` decides a turn with images from it and
VISION_MODEL: the session's model, VISION_MODEL instead (the reply's footer says so), or
ModelCannotReadImages.

Files and audio need no such decision: a PDF reaches any model as text (extracted here, or by
OpenRouter's own parser with PDF_ENGINE=openrouter, which serves every model), and a voice note
as its transcript. `accepts` still answers for them, for a caller that wants to know.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from core.errors import ModelCannotReadImages


class Modality(StrEnum):
    """An input the models list names (`architecture.input_modalities`)."""

    TEXT = "text"
    IMAGE = "image"
    FILE = "file"
    AUDIO = "audio"


@dataclass(frozen=True, slots=True)
class ListedModel:
    """What the models list says of one model."""

    inputs: frozenset[str]  # as listed, unknown kinds ("video") included
    # US dollars a prompt token; None when the price is not fixed (openrouter/auto lists -1).
    prompt_price: float | None
    # The tokens its request and answer may take together (`context_length`); None: not listed.
    context_length: int | None = None


@dataclass(frozen=True, slots=True, eq=False)
class ModelModalities:
    """One reading of the models list, by model id; empty: nothing known."""

    models: Mapping[str, ListedModel]

    @classmethod
    def from_entries(cls, entries: Iterable[object]) -> ModelModalities:
        """From the list's `data` entries; one without an id or input modalities is left out
        (that model is then unknown, not refused)."""
        models: dict[str, ListedModel] = {}
        for entry in entries:
            listed = _listed_model(entry)
            if listed is not None:
                models[listed[0]] = listed[1]
        return cls(models)

    @property
    def is_known(self) -> bool:
        return bool(self.models)

    def accepts(self, model: str, modality: Modality) -> bool | None:
        """Whether the model reads that input; None when the list does not name the model."""
        listed = self._listed(model)
        return None if listed is None else modality.value in listed.inputs

    def context_length(self, model: str) -> int | None:
        """The tokens the model's request and answer may take together; None when unknown."""
        listed = self._listed(model)
        return None if listed is None else listed.context_length

    def suggestion(
        self, modality: Modality, *, instead_of: str, preferred: Sequence[str] = ()
    ) -> str | None:
        """A model that reads `modality`: the first of `preferred` that does (the caller's
        DEFAULT_MODEL, say), else the cheapest of `instead_of`'s vendor that does, else the
        cheapest of all; None if the list names none.

        Only plain ids at a fixed price are picked: a variant (`:free`, `:thinking`) is rate
        limited or behaves apart, and a price that is not fixed cannot be compared."""
        for model in preferred:
            if self.accepts(model, modality):
                return model
        candidates = [
            (listed.prompt_price, model_id)
            for model_id, listed in self.models.items()
            if modality.value in listed.inputs
            and listed.prompt_price is not None
            and ":" not in model_id
        ]
        vendor = _vendor(instead_of)
        same_vendor = [candidate for candidate in candidates if _vendor(candidate[1]) == vendor]
        pool = same_vendor or candidates
        return min(pool)[1] if pool else None

    def _listed(self, model: str) -> ListedModel | None:
        listed = self.models.get(model)
        if listed is None and ":" in model:
            # Variants the list does not name apart (`:nitro`, `:floor`, `:online`) read what
            # their model reads.
            listed = self.models.get(model.rsplit(":", 1)[0])
        return listed


UNKNOWN = ModelModalities({})


@dataclass(frozen=True, slots=True)
class ImageRoute:
    """Where a message with images goes."""

    model: str
    # True: VISION_MODEL answers this turn instead of the session's model, which reads no
    # images; the reply's footer says so. The session's model stays what it was.
    is_vision_model: bool


def route_images(
    session_model: str,
    catalog: ModelModalities,
    *,
    vision_model: str | None,
    preferred: Sequence[str] = (),
) -> ImageRoute:
    """The model a message with images goes to, or ModelCannotReadImages (nothing is stored).

    A model the list does not name (or no list at all) is given the images: OpenRouter refuses
    them if it must, and that refusal is told. A VISION_MODEL the list says reads no images is
    not used. `preferred`: models to suggest first when refusing (e.g. DEFAULT_MODEL)."""
    if catalog.accepts(session_model, Modality.IMAGE) is not False:
        return ImageRoute(session_model, is_vision_model=False)
    if vision_model is not None and catalog.accepts(vision_model, Modality.IMAGE) is not False:
        return ImageRoute(vision_model, is_vision_model=True)
    suggestion = catalog.suggestion(Modality.IMAGE, instead_of=session_model, preferred=preferred)
    raise ModelCannotReadImages(model=session_model, suggestion=suggestion)


def _listed_model(entry: object) -> tuple[str, ListedModel] | None:
    if not isinstance(entry, dict):
        return None
    model_id, architecture = entry.get("id"), entry.get("architecture")
    inputs = architecture.get("input_modalities") if isinstance(architecture, dict) else None
    if not isinstance(model_id, str) or not model_id or not isinstance(inputs, list):
        return None
    pricing = entry.get("pricing")
    price = _price(pricing.get("prompt") if isinstance(pricing, dict) else None)
    inputs_read = frozenset(i for i in inputs if isinstance(i, str))
    return model_id, ListedModel(inputs_read, price, _context_length(entry.get("context_length")))


def _context_length(value: object) -> int | None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return None
    return value


def _price(value: object) -> float | None:
    """OpenRouter writes prices as decimal strings; negative ones mean "not fixed"."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    try:
        price = float(value)
    except ValueError:
        return None
    return price if math.isfinite(price) and price >= 0 else None


def _vendor(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else ""
