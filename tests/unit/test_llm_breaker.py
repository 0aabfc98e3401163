"""The model's circuit breaker as a state machine, on a clock the tests move by hand."""

from __future__ import annotations

import pytest

from core.errors import (
    ConfigError,
    ModelCircuitOpen,
    ModelEmptyAnswer,
    ModelRateLimited,
    ModelRejected,
    ModelStreamBroken,
    ModelTimeout,
    ModelUnavailable,
)
from core.llm.breaker import PROBE_WAIT_SECONDS, ModelBreaker, is_provider_fault
from core.messages import ENGLISH, PORTUGUESE, describe
from core.observability.metrics import Metrics
from core.settings import Settings, load_settings
from tests.fakes.clock import FakeClock

MODEL = "test/model"
OTHER = "test/other"
FAILURES = 3
COOLDOWN = 30.0
LEASE = 90.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def breaker(clock: FakeClock, metrics: Metrics) -> ModelBreaker:
    return ModelBreaker(
        failures=FAILURES, cooldown=COOLDOWN, clock=clock, metrics=metrics, probe_lease=LEASE
    )


def fail(breaker: ModelBreaker, times: int = 1, model: str = MODEL) -> None:
    for _ in range(times):
        breaker.admit(model).failed()


def refusal(breaker: ModelBreaker, model: str = MODEL) -> ModelCircuitOpen:
    with pytest.raises(ModelCircuitOpen) as refused:
        breaker.admit(model)
    return refused.value


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_the_circuit_opens_after_the_configured_failures_in_a_row(breaker: ModelBreaker):
    fail(breaker, FAILURES - 1)
    assert breaker.state(MODEL) == "closed"
    breaker.admit(MODEL).failed()
    assert breaker.state(MODEL) == "open"


def test_a_success_between_failures_starts_the_count_again(breaker: ModelBreaker):
    fail(breaker, FAILURES - 1)
    breaker.admit(MODEL).succeeded()
    fail(breaker, FAILURES - 1)
    assert breaker.state(MODEL) == "closed"


def test_while_open_requests_are_refused_at_once_with_the_whole_seconds_left(
    breaker: ModelBreaker, clock: FakeClock
):
    fail(breaker, FAILURES)
    assert refusal(breaker).retry_after == COOLDOWN
    clock.advance(COOLDOWN - 0.5)
    assert refusal(breaker).retry_after == 1  # rounded up, never "0 s"


def test_after_the_cooldown_one_probe_goes_through_and_the_others_are_refused(
    breaker: ModelBreaker, clock: FakeClock
):
    fail(breaker, FAILURES)
    clock.advance(COOLDOWN)
    assert breaker.state(MODEL) == "half-open"
    probe = breaker.admit(MODEL)
    assert probe.is_probe
    assert refusal(breaker).retry_after == PROBE_WAIT_SECONDS
    assert refusal(breaker).retry_after == PROBE_WAIT_SECONDS


def test_a_successful_probe_closes_the_circuit(breaker: ModelBreaker, clock: FakeClock):
    fail(breaker, FAILURES)
    clock.advance(COOLDOWN)
    breaker.admit(MODEL).succeeded()
    assert breaker.state(MODEL) == "closed"
    assert not breaker.admit(MODEL).is_probe
    fail(breaker, FAILURES - 1)  # the count starts again from zero
    assert breaker.state(MODEL) == "closed"


def test_a_failed_probe_opens_it_for_another_whole_cooldown(
    breaker: ModelBreaker, clock: FakeClock
):
    fail(breaker, FAILURES)
    clock.advance(COOLDOWN + 5)
    breaker.admit(MODEL).failed()
    assert breaker.state(MODEL) == "open"
    assert refusal(breaker).retry_after == COOLDOWN


@pytest.mark.parametrize("ending", ["released", "rejected"])
def test_a_probe_that_says_nothing_about_the_provider_lets_the_next_request_probe(
    breaker: ModelBreaker, clock: FakeClock, ending: str
):
    fail(breaker, FAILURES)
    clock.advance(COOLDOWN)
    probe = breaker.admit(MODEL)
    if ending == "released":
        probe.released()  # cancelled, e.g. the user went away
    else:
        probe.ended_with(ModelRejected(status=400))
    assert breaker.state(MODEL) == "half-open"
    assert breaker.admit(MODEL).is_probe


def test_a_probe_never_settled_lets_another_probe_through_after_its_lease(
    breaker: ModelBreaker, clock: FakeClock
):
    fail(breaker, FAILURES)
    clock.advance(COOLDOWN)
    breaker.admit(MODEL)  # lost: never settled
    clock.advance(LEASE - 1)
    refusal(breaker)
    clock.advance(1)
    assert breaker.admit(MODEL).is_probe


def test_check_refuses_only_while_open(breaker: ModelBreaker, clock: FakeClock):
    breaker.check(MODEL)  # closed: nothing to say
    fail(breaker, FAILURES)
    with pytest.raises(ModelCircuitOpen) as refused:
        breaker.check(MODEL)
    assert refused.value.retry_after == COOLDOWN
    clock.advance(COOLDOWN)
    breaker.check(MODEL)  # half-open: a retry may be the probe
    assert breaker.admit(MODEL).is_probe


def test_a_refusal_of_one_requests_content_counts_neither_way(breaker: ModelBreaker):
    fail(breaker, FAILURES - 1)
    for status in (400, 401, 402, 403, 404):
        breaker.admit(MODEL).ended_with(ModelRejected(status=status))
    assert breaker.state(MODEL) == "closed"
    fail(breaker)
    assert breaker.state(MODEL) == "open"


@pytest.mark.parametrize(
    "error",
    [
        ModelUnavailable(),
        ModelTimeout(),
        ModelRateLimited(retry_after=60),
        ModelStreamBroken(),
        ModelEmptyAnswer(),
    ],
    ids=["unavailable", "timeout", "rate_limited", "stream_broken", "empty_answer"],
)
def test_provider_faults_count_as_failures(breaker: ModelBreaker, error: ModelUnavailable):
    assert is_provider_fault(error)
    for _ in range(FAILURES):
        breaker.admit(MODEL).ended_with(error)
    assert breaker.state(MODEL) == "open"


def test_failures_of_requests_sent_before_it_opened_do_not_extend_the_cooldown(
    breaker: ModelBreaker, clock: FakeClock
):
    in_flight = [breaker.admit(MODEL) for _ in range(10)]
    for attempt in in_flight[:FAILURES]:
        attempt.failed()
    clock.advance(COOLDOWN - 1)
    for attempt in in_flight[FAILURES:]:
        attempt.failed()
    assert refusal(breaker).retry_after == 1


def test_a_success_of_a_request_sent_before_it_opened_closes_it(breaker: ModelBreaker):
    slow = breaker.admit(MODEL)
    fail(breaker, FAILURES)
    slow.succeeded()  # the provider answered after all
    assert breaker.state(MODEL) == "closed"


def test_an_attempt_counts_once_however_often_it_is_settled(breaker: ModelBreaker):
    attempt = breaker.admit(MODEL)
    for _ in range(FAILURES):
        attempt.failed()
    assert breaker.state(MODEL) == "closed"


def test_streams_cut_after_their_first_text_count_as_failures(breaker: ModelBreaker):
    for _ in range(FAILURES):
        attempt = breaker.admit(MODEL)
        attempt.answering()  # the first text arrived...
        attempt.ended_with(ModelStreamBroken(partial_text="half"))  # ...then the stream broke
    assert breaker.state(MODEL) == "open"


def test_a_probes_first_text_closes_the_circuit_before_its_answer_ends(
    breaker: ModelBreaker, clock: FakeClock
):
    fail(breaker, FAILURES)
    clock.advance(COOLDOWN)
    probe = breaker.admit(MODEL)
    probe.answering()
    assert breaker.state(MODEL) == "closed"
    assert not breaker.admit(MODEL).is_probe  # others go through while it still streams
    probe.failed()  # cut afterwards: one failure of a closed circuit
    fail(breaker, FAILURES - 2)
    assert breaker.state(MODEL) == "closed"


def test_each_model_has_a_circuit_of_its_own(breaker: ModelBreaker):
    fail(breaker, FAILURES, model=MODEL)
    assert breaker.state(OTHER) == "closed"
    breaker.admit(OTHER).succeeded()
    refusal(breaker, MODEL)


def test_with_zero_failures_to_open_it_never_opens(clock: FakeClock):
    breaker = ModelBreaker(failures=0, cooldown=COOLDOWN, clock=clock)
    fail(breaker, 1000)
    assert breaker.state(MODEL) == "closed"


def test_the_circuits_kept_are_bounded_forgetting_closed_ones_first(clock: FakeClock):
    breaker = ModelBreaker(failures=2, cooldown=COOLDOWN, clock=clock, max_circuits=2)
    fail(breaker, 2, model="open/one")
    fail(breaker, 1, model="closed/one")
    fail(breaker, 1, model="closed/two")  # the cap: "closed/one" is forgotten, not "open/one"
    fail(breaker, 1, model="closed/one")
    assert breaker.state("closed/one") == "closed"
    assert breaker.state("open/one") == "open"


def test_metrics_count_opens_refusals_and_the_breakers_open_now(
    breaker: ModelBreaker, clock: FakeClock, metrics: Metrics
):
    fail(breaker, FAILURES, model=MODEL)
    fail(breaker, FAILURES, model=OTHER)
    assert sample(metrics, "chatbridge_model_breakers_open") == 2
    refusal(breaker, MODEL)
    refusal(breaker, MODEL)
    clock.advance(COOLDOWN)
    breaker.admit(MODEL).failed()  # a failed probe opens it again
    breaker.admit(OTHER).succeeded()

    assert sample(metrics, "chatbridge_model_breaker_opens_total", model=MODEL) == 2
    assert sample(metrics, "chatbridge_model_breaker_opens_total", model=OTHER) == 1
    assert sample(metrics, "chatbridge_model_breaker_refusals_total", model=MODEL) == 2
    assert sample(metrics, "chatbridge_model_breakers_open") == 1


def test_the_refusal_says_when_to_retry_in_both_languages():
    refused = ModelCircuitOpen(retry_after=25)
    assert describe(refused, ENGLISH).endswith("try /retry in 25 s.")
    assert describe(refused, PORTUGUESE).endswith("tente /retry em 25 s.")
    assert "25 s" in str(refused)


@pytest.fixture
def no_outside_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No .env and no setting in the environment."""
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.mark.usefixtures("no_outside_configuration")
def test_the_settings_default_to_five_failures_and_thirty_seconds():
    breaker = ModelBreaker.from_settings(load_settings())
    assert (breaker.failures_to_open, breaker.cooldown) == (5, 30.0)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("MODEL_BREAKER_FAILURES", "-1"), ("MODEL_BREAKER_COOLDOWN", "0"),
     ("MODEL_BREAKER_COOLDOWN", "3601")],
)  # fmt: skip
@pytest.mark.usefixtures("no_outside_configuration")
def test_a_bad_breaker_setting_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


@pytest.mark.usefixtures("no_outside_configuration")
def test_settings_from_the_environment_reach_the_breaker(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MODEL_BREAKER_FAILURES", "7")
    monkeypatch.setenv("MODEL_BREAKER_COOLDOWN", "2.5")
    breaker = ModelBreaker.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    assert (breaker.failures_to_open, breaker.cooldown) == (7, 2.5)
