"""The model's circuit breaker: after repeated provider failures, turns fail at once for a while.

One circuit per requested model (with FALLBACK_MODELS, a request for that model is the whole
chain OpenRouter tries, so a failure means every model of the chain failed):

    closed ──MODEL_BREAKER_FAILURES failed requests in a row──▶ open
      ▲                                                          │ MODEL_BREAKER_COOLDOWN later
      │                                                          ▼
      └───────────────── the probe answers ─────────────────── half-open ──probe fails──▶ open

Every HTTP request to the model (each retry included) asks `admit()` first, and reports how it
ended on the `Attempt` it got back. A success is a whole answer (a stream's last event): it
resets the count, and closes the circuit whatever its state (the provider answered). A
provider's fault is a failure: 5xx, 429, timeouts, connection errors, unreadable or cut streams
(cut after some text too), empty answers. A 4xx refusal of one request's content, or a request
cancelled or left early, says nothing about the provider and counts neither way. While open,
`admit()` raises ModelCircuitOpen at once with the seconds left, and no request is made; in
half-open, one probe request is let through and the others are refused until it ends, or until
its first text arrives (which closes the circuit, so a long answer keeps no one waiting).

State lives in this process only (see docs/reliability.md): each replica learns on its own, so
at most replicas x MODEL_BREAKER_FAILURES requests reach a failing provider before every
replica stops asking. Not thread-safe: it is used from one event loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

import structlog

from core.errors import (
    ModelCircuitOpen,
    ModelError,
    ModelNotConfigured,
    ModelRejected,
)
from core.observability.metrics import Metrics
from core.settings import Settings

log = structlog.get_logger(__name__)

# Users choose model ids, so the circuits kept are capped; a closed one is forgotten first.
MAX_CIRCUITS: Final = 1000
# How long a half-open probe keeps the slot: a stream kept alive by OpenRouter's processing
# comments never times out by itself, and a lost probe must not keep the circuit shut.
PROBE_LEASE_SECONDS: Final = 90.0
# What a turn refused while the probe is out is told to wait: the probe may end any moment.
PROBE_WAIT_SECONDS: Final = 1

CircuitState = Literal["closed", "open", "half-open"]


def is_provider_fault(error: ModelError) -> bool:
    """True for failures that say the provider is in trouble, not that the request was bad."""
    return not isinstance(error, ModelRejected | ModelNotConfigured | ModelCircuitOpen)


@dataclass(slots=True)
class _Circuit:
    failures: int = 0  # consecutive, while closed
    opened_at: float | None = None  # None: closed
    probe_until: float | None = None  # half-open: a probe is out until then


class ModelBreaker:
    """Circuits by model id; `admit()` before each request, then settle its Attempt once."""

    def __init__(
        self,
        *,
        failures: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        probe_lease: float = PROBE_LEASE_SECONDS,
        max_circuits: int = MAX_CIRCUITS,
    ) -> None:
        """`failures`: failed requests in a row that open a circuit (0: never open)."""
        self.failures_to_open = failures
        self.cooldown = cooldown
        self._clock = clock
        self._metrics = metrics
        self._probe_lease = probe_lease
        self._max_circuits = max(1, max_circuits)
        self._circuits: dict[str, _Circuit] = {}

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics | None = None) -> ModelBreaker:
        return cls(
            failures=settings.model_breaker_failures,
            cooldown=settings.model_breaker_cooldown,
            metrics=metrics,
        )

    def state(self, model: str) -> CircuitState:
        """`closed`, `open` or `half-open`: for logs and tests."""
        circuit = self._circuits.get(model)
        if circuit is None or circuit.opened_at is None:
            return "closed"
        return "open" if self._clock() < circuit.opened_at + self.cooldown else "half-open"

    def admit(self, model: str) -> Attempt:
        """Permission for one request to `model`; raises ModelCircuitOpen while it is open."""
        circuit = self._circuits.get(model)
        if circuit is None or circuit.opened_at is None:
            return Attempt(self, model, is_probe=False)
        now = self._clock()
        closes_at = circuit.opened_at + self.cooldown
        if now < closes_at:
            self._refuse(model, closes_at - now)
        if circuit.probe_until is not None and now < circuit.probe_until:
            self._refuse(model, PROBE_WAIT_SECONDS)
        circuit.probe_until = now + self._probe_lease
        log.info("model_breaker.probe", model=model)
        return Attempt(self, model, is_probe=True)

    def check(self, model: str) -> None:
        """Raise ModelCircuitOpen if `model`'s circuit is open, without asking to be admitted.

        A request that just failed checks before waiting to retry: if its failure opened the
        circuit, the turn learns it now rather than after the wait.
        """
        circuit = self._circuits.get(model)
        if circuit is not None and circuit.opened_at is not None:
            seconds_left = circuit.opened_at + self.cooldown - self._clock()
            if seconds_left > 0:
                self._refuse(model, seconds_left)

    def _refuse(self, model: str, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.model_breaker_refused(model)
        raise ModelCircuitOpen(retry_after=max(1, math.ceil(seconds)))

    def _succeeded(self, model: str) -> None:
        circuit = self._circuits.pop(model, None)
        if circuit is not None and circuit.opened_at is not None:
            log.info("model_breaker.closed", model=model)
            self._report()

    def _failed(self, model: str, *, is_probe: bool) -> None:
        if self.failures_to_open == 0:
            return  # never opens: nothing to keep
        circuit = self._circuit(model)
        if circuit.opened_at is None:
            circuit.failures += 1
            if circuit.failures >= self.failures_to_open:
                self._open(model, circuit, event="model_breaker.opened")
        elif is_probe:
            self._open(model, circuit, event="model_breaker.reopened")
        # Otherwise a request admitted before the circuit opened: it already counts as open.

    def _released(self, model: str, *, is_probe: bool) -> None:
        circuit = self._circuits.get(model)
        if is_probe and circuit is not None:
            circuit.probe_until = None  # the next request may probe

    def _open(self, model: str, circuit: _Circuit, *, event: str) -> None:
        circuit.opened_at = self._clock()
        circuit.probe_until = None
        log.warning(event, model=model, failures=circuit.failures, cooldown=self.cooldown)
        if self._metrics is not None:
            self._metrics.model_breaker_opened(model)
        self._report()

    def _circuit(self, model: str) -> _Circuit:
        circuit = self._circuits.get(model)
        if circuit is None:
            if len(self._circuits) >= self._max_circuits:
                self._forget_one()
            circuit = self._circuits[model] = _Circuit()
        return circuit

    def _forget_one(self) -> None:
        """Drop the oldest closed circuit, else the oldest one: memory stays bounded."""
        oldest = next(iter(self._circuits))
        victim = next((m for m, c in self._circuits.items() if c.opened_at is None), oldest)
        del self._circuits[victim]
        self._report()

    def _report(self) -> None:
        if self._metrics is not None:
            tripped = sum(1 for c in self._circuits.values() if c.opened_at is not None)
            self._metrics.model_breakers_tripped(tripped)


class Attempt:
    """One admitted request; settle it once: `succeeded()`, `failed()`, `ended_with(error)` or
    `released()`; the first settles it, later calls do nothing."""

    def __init__(self, breaker: ModelBreaker, model: str, *, is_probe: bool) -> None:
        self._breaker = breaker
        self._model = model
        self.is_probe = is_probe
        self._is_settled = False

    def answering(self) -> None:
        """The first text (or the whole answer) arrived: a probe closes the circuit now."""
        if self.is_probe and not self._is_settled:
            self.is_probe = False  # from here on an ordinary request, still to be settled
            self._breaker._succeeded(self._model)

    def succeeded(self) -> None:
        if self._settle():
            self._breaker._succeeded(self._model)

    def failed(self) -> None:
        if self._settle():
            self._breaker._failed(self._model, is_probe=self.is_probe)

    def ended_with(self, error: ModelError) -> None:
        """Failed when the error is the provider's fault, else released."""
        if is_provider_fault(error):
            self.failed()
        else:
            self.released()

    def released(self) -> None:
        """Ended saying nothing about the provider (cancelled, or a 4xx refusal)."""
        if self._settle():
            self._breaker._released(self._model, is_probe=self.is_probe)

    def _settle(self) -> bool:
        is_first = not self._is_settled
        self._is_settled = True
        return is_first
