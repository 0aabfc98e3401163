"""The webhook signature a receiver checks, and the webhook settings."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.events.signing import sign, verify_signature
from core.settings import load_settings

SECRET = "unit-webhook-secret-0123"
BODY = b'{"id":"e1","type":"turn.completed","createdAt":"2026-11-26T15:00:00.000Z","data":{}}'
NOW = 1_795_708_200


def test_a_signed_body_verifies():
    assert verify_signature(SECRET, BODY, str(NOW), sign(SECRET, BODY, NOW), now=NOW)


def test_a_tampered_body_is_rejected():
    signature = sign(SECRET, BODY, NOW)
    assert not verify_signature(SECRET, BODY.replace(b"e1", b"e2"), str(NOW), signature, now=NOW)


def test_a_signature_made_with_another_secret_is_rejected():
    signature = sign("another-secret-0123456", BODY, NOW)
    assert not verify_signature(SECRET, BODY, str(NOW), signature, now=NOW)


def test_a_timestamp_changed_after_signing_is_rejected():
    signature = sign(SECRET, BODY, NOW - 1000)  # a captured request, replayed with a new time
    assert not verify_signature(SECRET, BODY, str(NOW), signature, now=NOW)


@pytest.mark.parametrize(
    ("age", "is_accepted"), [(300, True), (301, False), (-300, True), (-301, False)]
)
def test_timestamps_beyond_the_tolerance_either_way_are_rejected(age: int, is_accepted: bool):
    sent = NOW - age
    signature = sign(SECRET, BODY, sent)
    assert verify_signature(SECRET, BODY, str(sent), signature, now=NOW) is is_accepted


@pytest.mark.parametrize(
    ("timestamp", "signature"),
    [("", None), ("12a", None), ("-5", None), (str(NOW), ""), (str(NOW), "md5=abc")],
)
def test_malformed_headers_are_rejected(timestamp: str, signature: str | None):
    value = sign(SECRET, BODY, NOW) if signature is None else signature
    assert not verify_signature(SECRET, BODY, timestamp, value, now=NOW)


def test_urls_without_a_secret_stop_the_service_naming_the_secret():
    with pytest.raises(ConfigError, match=r"^WEBHOOK_SECRET: is required with WEBHOOK_URLS"):
        load_settings(webhook_urls="https://hooks.example.com/x")


@pytest.mark.parametrize(("length", "is_valid"), [(15, False), (16, True)])
def test_the_secret_needs_sixteen_characters(length: int, is_valid: bool):
    if is_valid:
        assert load_settings(webhook_urls="https://h.example/x", webhook_secret="s" * length)
        return
    with pytest.raises(ConfigError, match=r"^WEBHOOK_SECRET: must be at least 16"):
        load_settings(webhook_urls="https://h.example/x", webhook_secret="s" * length)


@pytest.mark.parametrize(("attempts", "is_valid"), [(0, False), (1, True), (8, True)])
def test_max_attempts_is_at_least_one(attempts: int, is_valid: bool):
    if is_valid:
        assert load_settings(webhook_max_attempts=attempts).webhook_max_attempts == attempts
        return
    with pytest.raises(ConfigError, match=r"^WEBHOOK_MAX_ATTEMPTS:"):
        load_settings(webhook_max_attempts=attempts)


def test_a_bad_url_is_refused_without_repeating_its_credentials():
    with pytest.raises(ConfigError, match=r"^WEBHOOK_URLS:") as refused:
        load_settings(webhook_urls="ftp://user:pa55word@h.example/x", webhook_secret="s" * 16)
    assert "pa55word" not in str(refused.value)


def test_urls_are_split_on_commas_and_webhooks_are_off_by_default():
    assert load_settings().webhook_urls == ()
    settings = load_settings(
        webhook_urls="https://a.example/x, http://b.example:8080/y?t=1", webhook_secret="s" * 16
    )
    assert settings.webhook_urls == ("https://a.example/x", "http://b.example:8080/y?t=1")
