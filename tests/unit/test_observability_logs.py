"""Logging: secrets are redacted from our events and from library log lines alike."""

from __future__ import annotations

import io
import json
import logging

import structlog

from core.observability.logs import REDACTED, configure_logging

SECRET = "sk-or-v1-abcdef123456"


def configured(stream: io.StringIO, log_format: str) -> None:
    configure_logging(level="INFO", log_format=log_format, secrets=[SECRET, "abc"], stream=stream)


def test_secrets_are_redacted_in_json_logs_of_ours_and_of_libraries():
    out = io.StringIO()
    configured(out, "json")
    structlog.get_logger("test").info(
        "calling", url=f"https://x/bot{SECRET}/getMe", nested={"k": SECRET}
    )
    logging.getLogger("aiohttp.server").error("request to /bot%s failed", SECRET)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    assert SECRET not in out.getvalue()
    assert lines[0]["url"] == f"https://x/bot{REDACTED}/getMe"
    assert lines[0]["nested"] == {"k": REDACTED}


def test_short_values_are_not_treated_as_secrets():
    out = io.StringIO()
    configured(out, "json")
    structlog.get_logger("test").info("abc is a word")
    assert json.loads(out.getvalue())["event"] == "abc is a word"


def test_context_bound_with_contextvars_reaches_every_line():
    out = io.StringIO()
    configured(out, "json")
    structlog.contextvars.bind_contextvars(platform="telegram", user="telegram:1")
    try:
        structlog.get_logger("test").info("turn")
    finally:
        structlog.contextvars.clear_contextvars()
    line = json.loads(out.getvalue())
    assert (line["platform"], line["user"]) == ("telegram", "telegram:1")


def test_console_format_is_readable_and_redacted():
    out = io.StringIO()
    configured(out, "console")
    structlog.get_logger("test").warning(f"key is {SECRET}")
    assert "key is" in out.getvalue()
    assert SECRET not in out.getvalue()
