"""Prometheus metrics of one process: turns, errors, model latency and usage, Redis errors.

One `Metrics` per process, built by the composition root on a `CollectorRegistry` of its own
(never prometheus_client's global one, so tests and several cores in one process never share
counts), and passed to the core through constructors. A scrape only formats counters held in
memory: it never touches Redis.

Every label has a bounded set of values — fronts, error codes, a few kinds, and model ids capped
at MAX_MODEL_LABELS — never a user or a session, so the number of series stays small.
An optional `Tally` (the dashboard's, core.observability.analytics) is told the same events,
plus the user of each turn for its active-user count.

    chatbridge_turns_total{front, outcome}                 completed | abandoned | an error code
    chatbridge_errors_total{front, kind}                   core error codes, turns and commands
    chatbridge_model_latency_seconds{model}                request start to stream end
    chatbridge_model_time_to_first_token_seconds{model}    request start to first text
    chatbridge_model_tokens_total{model, kind}             prompt | completion
    chatbridge_model_cost_usd_total{model}                 as OpenRouter reports it
    chatbridge_redis_errors_total{kind}                    unavailable | full | other
    chatbridge_rate_limit_refusals_total{source}           model (OpenRouter 429s we gave up on),
                                                           user (RATE_LIMIT_MESSAGES),
                                                           budget (DAILY_TOKEN_BUDGET)
    chatbridge_model_breakers_open                         models whose breaker is open or half-open
    chatbridge_model_breaker_opens_total{model}            times a model's breaker opened
    chatbridge_model_breaker_refusals_total{model}         requests a tripped breaker refused
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Final, Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from core.conversation import Usage
from core.errors import (
    ChatbridgeError,
    DailyBudgetExhausted,
    ModelRateLimited,
    RateLimited,
    StoreError,
    StoreFull,
    StoreUnavailable,
)

# The classic text format that generate_latest writes (prometheus_client serves it under this
# type too). Spelled out because CONTENT_TYPE_LATEST names format 1.0.0 in recent releases.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

FRONTS: Final = frozenset({"http", "cli", "telegram", "discord"})
UNKNOWN_FRONT: Final = "unknown"
COMPLETED: Final = "completed"
ABANDONED: Final = "abandoned"  # cancelled, or the consumer stopped reading before the end
INTERNAL_ERROR: Final = ChatbridgeError.code  # an exception that is not a core error (a bug)
OTHER_MODEL: Final = "other"
# Users choose model ids (/model, modelId), so their number is capped; past the cap, "other".
MAX_MODEL_LABELS: Final = 50
# From a fast cached answer to a long reasoning one; anything slower lands in +Inf.
LATENCY_BUCKETS: Final = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120)

RateLimitSource = Literal["model", "user", "budget"]
# Which refusal each error is: the model provider's, or one of a user's own turn limits.
RATE_LIMIT_SOURCES: Final[tuple[tuple[type[ChatbridgeError], RateLimitSource], ...]] = (
    (ModelRateLimited, "model"),
    (RateLimited, "user"),
    (DailyBudgetExhausted, "budget"),
)
RedisErrorKind = Literal["unavailable", "full", "other"]
REDIS_ERROR_KINDS: Final[tuple[RedisErrorKind, ...]] = ("unavailable", "full", "other")


class Tally(Protocol):
    """A second sink for what Metrics counts, with the same bounded labels (the dashboard's
    core.observability.analytics.Tallies): in memory only, so counting into it costs the chat
    path nothing."""

    def turn(self, front: str, outcome: str, user_id: str | None) -> None: ...

    def error(self, kind: str) -> None: ...

    def refusal(self, source: str) -> None: ...

    def model_call(self, model: str, seconds: float, first_token_seconds: float | None) -> None: ...

    def usage(
        self, model: str, prompt_tokens: int, completion_tokens: int, cost: float | None
    ) -> None: ...


def front_of(user_id: str) -> str:
    """The front of a platform-qualified user id: `telegram:123` is telegram."""
    prefix, separator, _ = user_id.partition(":")
    return prefix if separator and prefix in FRONTS else UNKNOWN_FRONT


class Metrics:
    """The process's counters and histograms; `exposition()` is the body of GET /metrics."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        models: Iterable[str] = (),
        tally: Tally | None = None,
    ) -> None:
        """`models`: the configured ones, which keep their own label whatever users pick.
        `tally`: also counts turns, errors, refusals, model calls and usage there."""
        self.registry = registry if registry is not None else CollectorRegistry()
        self._tally = tally
        self._model_labels = _CappedLabels(MAX_MODEL_LABELS, OTHER_MODEL, models)
        self._define_counters()
        self._define_histograms()
        self._define_breaker_metrics()
        # Series that exist from the start read 0 instead of missing until the first event.
        for kind in REDIS_ERROR_KINDS:
            self._redis_errors.labels(kind)
        for _, source in RATE_LIMIT_SOURCES:
            self._rate_limit_refusals.labels(source)

    def _define_counters(self) -> None:
        registry = self.registry
        self._turns = Counter(
            "chatbridge_turns", "Chat turns by front and how they ended.",
            ["front", "outcome"], registry=registry,
        )  # fmt: skip
        self._errors = Counter(
            "chatbridge_errors", "Core errors that ended a turn or a command, by code.",
            ["front", "kind"], registry=registry,
        )  # fmt: skip
        self._tokens = Counter(
            "chatbridge_model_tokens", "Tokens the model reported, by answering model.",
            ["model", "kind"], registry=registry,
        )  # fmt: skip
        self._cost = Counter(
            "chatbridge_model_cost_usd", "Cost in US dollars as OpenRouter reported it.",
            ["model"], registry=registry,
        )  # fmt: skip
        self._redis_errors = Counter(
            "chatbridge_redis_errors", "Redis errors, by what they mean for the service.",
            ["kind"], registry=registry,
        )  # fmt: skip
        self._rate_limit_refusals = Counter(
            "chatbridge_rate_limit_refusals", "Requests refused by a rate limit, by whose.",
            ["source"], registry=registry,
        )  # fmt: skip

    def _define_histograms(self) -> None:
        self._latency = Histogram(
            "chatbridge_model_latency_seconds",
            "Model request start to stream end (or failure); answering model, else requested.",
            ["model"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._first_token = Histogram(
            "chatbridge_model_time_to_first_token_seconds",
            "Model request start to the first text of the answer.",
            ["model"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def _define_breaker_metrics(self) -> None:
        registry = self.registry
        self._breakers_open = Gauge(
            "chatbridge_model_breakers_open",
            "Models whose circuit breaker is open or half-open (turns fail at once).",
            registry=registry,
        )
        self._breaker_opens = Counter(
            "chatbridge_model_breaker_opens", "Times a model's circuit breaker opened.",
            ["model"], registry=registry,
        )  # fmt: skip
        self._breaker_refusals = Counter(
            "chatbridge_model_breaker_refusals",
            "Model requests an open circuit breaker refused without sending them.",
            ["model"], registry=registry,
        )  # fmt: skip

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (see CONTENT_TYPE)."""
        return generate_latest(self.registry)

    def turn_completed(self, front: str, user_id: str | None = None) -> None:
        """`user_id` (never a label) counts the user as active in the tally, if any."""
        self._count_turn(_front(front), COMPLETED, user_id)

    def turn_ended_early(
        self, front: str, ending: BaseException | None, user_id: str | None = None
    ) -> None:
        """A turn that stored no reply: a core error, a bug, or abandoned (None, cancelled)."""
        front = _front(front)
        if isinstance(ending, Exception):
            kind = ending.code if isinstance(ending, ChatbridgeError) else INTERNAL_ERROR
            self._count_turn(front, kind, user_id)
            self._count_error(front, ending)
        else:
            self._count_turn(front, ABANDONED, user_id)

    def _count_turn(self, front: str, outcome: str, user_id: str | None) -> None:
        self._turns.labels(front, outcome).inc()
        if self._tally is not None:
            self._tally.turn(front, outcome, user_id)

    def command_failed(self, front: str, error: ChatbridgeError) -> None:
        self._count_error(_front(front), error)

    def model_call(self, requested_model: str) -> ModelCall:
        """Start timing one model request; its stream's end is reported on the ModelCall."""
        return ModelCall(self, requested_model)

    def redis_error(self, error: StoreError) -> None:
        self._redis_errors.labels(_redis_error_kind(error)).inc()

    def rate_limit_refused(self, source: RateLimitSource) -> None:
        self._rate_limit_refusals.labels(source).inc()
        if self._tally is not None:
            self._tally.refusal(source)

    def model_breaker_opened(self, model: str) -> None:
        self._breaker_opens.labels(self._model_labels(model)).inc()

    def model_breaker_refused(self, model: str) -> None:
        self._breaker_refusals.labels(self._model_labels(model)).inc()

    def model_breakers_tripped(self, count: int) -> None:
        """How many models' breakers are open or half-open now."""
        self._breakers_open.set(count)

    def _count_error(self, front: str, error: Exception) -> None:
        kind = error.code if isinstance(error, ChatbridgeError) else INTERNAL_ERROR
        self._errors.labels(front, kind).inc()
        if self._tally is not None:
            self._tally.error(kind)
        for error_type, source in RATE_LIMIT_SOURCES:
            if isinstance(error, error_type):
                self.rate_limit_refused(source)

    def observe_model_call(
        self, model: str, seconds: float, first_token_seconds: float | None
    ) -> None:
        """Prefer `model_call()`, which times the request and calls this once."""
        label = self._model_labels(model)
        self._latency.labels(label).observe(seconds)
        if first_token_seconds is not None:
            self._first_token.labels(label).observe(first_token_seconds)
        if self._tally is not None:
            self._tally.model_call(label, seconds, first_token_seconds)

    def count_usage(self, model: str, usage: Usage | None) -> None:
        if usage is None:
            return
        label = self._model_labels(model)
        self._tokens.labels(label, "prompt").inc(usage.prompt_tokens)
        self._tokens.labels(label, "completion").inc(usage.completion_tokens)
        if usage.cost is not None and usage.cost >= 0:  # a counter only goes up
            self._cost.labels(label).inc(usage.cost)
        if self._tally is not None:
            self._tally.usage(label, usage.prompt_tokens, usage.completion_tokens, usage.cost)


class ModelCall:
    """One model request, timed from its start; observed once, when its stream ends."""

    def __init__(self, metrics: Metrics, requested_model: str) -> None:
        self._metrics = metrics
        self._requested_model = requested_model
        self._started = time.perf_counter()
        self._first_text_at: float | None = None
        self._is_observed = False

    def elapsed(self) -> float:
        return time.perf_counter() - self._started

    def saw_text(self) -> None:
        if self._first_text_at is None:
            self._first_text_at = time.perf_counter()

    def answered(self, model: str, usage: Usage | None) -> None:
        """The stream ended with an answer from `model` (which may be a fallback)."""
        if self._observe(model):
            self._metrics.count_usage(model, usage)

    def failed(self) -> None:
        """The stream ended in an error: timed under the model that was asked."""
        self._observe(self._requested_model)

    def _observe(self, model: str) -> bool:
        if self._is_observed:
            return False
        self._is_observed = True
        first = None if self._first_text_at is None else self._first_text_at - self._started
        self._metrics.observe_model_call(model, self.elapsed(), first)
        return True


class _CappedLabels:
    """Passes the first `limit` distinct values through; every later one becomes `other`."""

    def __init__(self, limit: int, other: str, first: Iterable[str] = ()) -> None:
        self._limit = limit
        self._other = other
        self._seen: set[str] = set(first)

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return self._other
        self._seen.add(value)
        return value


def _front(front: str) -> str:
    return front if front in FRONTS else UNKNOWN_FRONT


def _redis_error_kind(error: StoreError) -> RedisErrorKind:
    if isinstance(error, StoreUnavailable):
        return "unavailable"
    if isinstance(error, StoreFull):
        return "full"
    return "other"
