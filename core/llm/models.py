"""Which models read images, files and audio, and how long their context is: OpenRouter's
models list, cached in Redis.

    await catalog.accepts(model, Modality.IMAGE)  ->  True | False | None (unknown)

On None the caller lets the request through, and OpenRouter's own refusal is told.

One copy for every replica: `models:{chatbridge-models}:catalog`, a string of compact JSON (each
model's input modalities, prompt price and context length, about 26 KB for 400 models),
written with `SET EX` for an hour in a hash tag of its own (docs/data-model.md, "Models
list"). A lookup reads, each step only when the one before has nothing fresh:

1. this process's copy, fresh until the Redis copy it came from expires (its PTTL when read,
   so no two replicas' clocks are compared);
2. the Redis copy: one round trip (GET and PTTL, pipelined);
3. OpenRouter (`GET /models`, every page), written to Redis for the other replicas.

Steps 2 and 3 run in one task per process at a time (single flight): concurrent lookups wait
for that task until `wait_seconds` after it started, and it goes on without them, so a slow
OpenRouter delays messages that much at most and its answer still lands for the next ones.

When OpenRouter fails, lookups answer from this process's last copy, however old, else None;
a failed fetch is not tried again for `retry_after_failure` seconds (one request a minute per
replica during an outage, not one per message; Redis is still read meanwhile, in case another
replica got the list). The stale copy is kept in process rather than in a longer-lived Redis
key: every replica that handled images in the last hour holds one, which is when it matters;
it outlives Redis being down, which a Redis copy cannot; and a replica that starts during an
OpenRouter outage after the hour answers "unknown", which lets messages through, rather than
from a list of unbounded age. Redis failures are logged and passed over: the list is advice,
and the turn that asked meets Redis itself next.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

import structlog
from redis.exceptions import RedisError

from core.errors import ModelError
from core.llm.modalities import UNKNOWN, ListedModel, Modality, ModelModalities
from core.llm.wire import JSONObject
from core.storage.connection import RedisClient

CATALOG_KEY: Final = "models:{chatbridge-models}:catalog"
CATALOG_TTL_SECONDS: Final = 3600
# How long a lookup waits for the list (Redis, then OpenRouter) before answering from what it
# has: a message with images is delayed at most this much, once an hour.
WAIT_SECONDS: Final = 5.0
RETRY_AFTER_FAILURE_SECONDS: Final = 60.0
# The stored value's layout; a value of another version is read as no copy, and replaced.
FORMAT_VERSION: Final = 2

log = structlog.get_logger(__name__)


class ModelsList(Protocol):
    """Where the list comes from: core.llm.openrouter.OpenRouterClient."""

    async def list_models(self) -> list[JSONObject]: ...


@dataclass(frozen=True, slots=True)
class _Copy:
    modalities: ModelModalities
    fresh_until: float  # on the catalog's monotonic clock


class ModelCatalog:
    """Models' input modalities, shared through Redis; build once per process, `aclose()`."""

    def __init__(
        self,
        redis: RedisClient,
        source: ModelsList,
        *,
        ttl_seconds: int = CATALOG_TTL_SECONDS,
        wait_seconds: float = WAIT_SECONDS,
        retry_after_failure: float = RETRY_AFTER_FAILURE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._source = source
        self._ttl_seconds = ttl_seconds
        self._wait_seconds = wait_seconds
        self._retry_after_failure = retry_after_failure
        self._clock = clock
        self._copy: _Copy | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._refresh_deadline = 0.0  # on the event loop's clock: lookups wait until then
        self._next_fetch_at = -math.inf  # after a failed fetch, none before then

    async def accepts(self, model: str, modality: Modality) -> bool | None:
        """Whether `model` reads `modality`; None when unknown (no list, or not in it)."""
        return (await self.modalities()).accepts(model, modality)

    async def modalities(self) -> ModelModalities:
        """The freshest list this process can have within `wait_seconds`; UNKNOWN if none."""
        if not self._is_fresh():
            await self._wait_for_refresh()
        return self._copy.modalities if self._copy is not None else UNKNOWN

    async def aclose(self) -> None:
        """Stop a fetch under way (the Redis client and the source are the caller's)."""
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)

    def _is_fresh(self) -> bool:
        return self._copy is not None and self._clock() < self._copy.fresh_until

    async def _wait_for_refresh(self) -> None:
        loop = asyncio.get_running_loop()
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._refreshed(), name="model-catalog-refresh")
            # Counted from the fetch's start, not each lookup's: while OpenRouter hangs, only
            # the lookups of its first `wait_seconds` wait; later ones answer at once.
            self._refresh_deadline = loop.time() + self._wait_seconds
        # Shielded: a lookup that gives up (or is cancelled) leaves the fetch running.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(self._refresh_deadline):
                await asyncio.shield(self._refresh)

    async def _refreshed(self) -> None:
        shared = await self._read_shared()
        if shared is not None:
            self._copy = shared
            return
        if self._clock() < self._next_fetch_at:
            return  # it failed lately: the stale copy, or unknown, until then
        modalities = await self._fetched()
        if modalities is None:
            self._next_fetch_at = self._clock() + self._retry_after_failure
            return
        self._copy = _Copy(modalities, self._clock() + self._ttl_seconds)
        await self._write_shared(modalities)

    async def _fetched(self) -> ModelModalities | None:
        try:
            entries = await self._source.list_models()
        except ModelError as error:
            log.warning("model_catalog_fetch_failed", error=error.code, stale=bool(self._copy))
            return None
        modalities = ModelModalities.from_entries(entries)
        if not modalities.is_known:
            # An empty list would make every model unknown for an hour: keep what we had.
            log.warning("model_catalog_fetch_failed", error="empty_list", stale=bool(self._copy))
            return None
        log.info("model_catalog_fetched", models=len(modalities.models))
        return modalities

    async def _read_shared(self) -> _Copy | None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(CATALOG_KEY)
                pipe.pttl(CATALOG_KEY)
                stored, left_ms = await pipe.execute()
        except RedisError as exc:
            log.warning("model_catalog_redis_failed", step="read", error=type(exc).__name__)
            return None
        if stored is None or not isinstance(left_ms, int) or left_ms <= 0:
            return None  # absent, expiring this very moment, or (never written so) without TTL
        modalities = decoded(stored)
        if modalities is None:
            return None
        return _Copy(modalities, self._clock() + left_ms / 1000)

    async def _write_shared(self, modalities: ModelModalities) -> None:
        try:
            await self._redis.set(CATALOG_KEY, encoded(modalities), ex=self._ttl_seconds)
        except RedisError as exc:  # down, or full (noeviction): this process keeps its copy
            log.warning("model_catalog_redis_failed", step="write", error=type(exc).__name__)


def encoded(modalities: ModelModalities) -> str:
    """`{"v": 2, "models": {id: ["text+image", prompt price or null, context length or
    null]}}`, without spaces."""
    models = {
        model_id: ["+".join(sorted(listed.inputs)), listed.prompt_price, listed.context_length]
        for model_id, listed in modalities.models.items()
    }
    return json.dumps({"v": FORMAT_VERSION, "models": models}, separators=(",", ":"))


def decoded(stored: str | bytes) -> ModelModalities | None:
    """The stored list, or None when it is not one of this version (a copy is then fetched)."""
    try:
        value = json.loads(stored)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("v") != FORMAT_VERSION:
        return None
    models = value.get("models")
    if not isinstance(models, dict):
        return None
    read: dict[str, ListedModel] = {}
    for model_id, facts in models.items():
        if not isinstance(facts, list) or len(facts) != 3 or not isinstance(facts[0], str):
            return None
        price = facts[1] if isinstance(facts[1], int | float) else None
        context_length = facts[2] if isinstance(facts[2], int) else None
        inputs = frozenset(facts[0].split("+")) - {""}
        read[model_id] = ListedModel(inputs, price, context_length)
    return ModelModalities(read)
