"""How webhook requests are signed, and how a receiver checks them (docs/webhooks.md).

The signature is an HMAC-SHA256, keyed with WEBHOOK_SECRET, over `"<timestamp>." + body`:
signing the timestamp with the body is what makes the timestamp header trustworthy, so a
receiver that refuses old timestamps refuses replays of a captured request.
"""

from __future__ import annotations

import hashlib
import hmac

EVENT_HEADER = "X-Chatbridge-Event"
DELIVERY_HEADER = "X-Chatbridge-Delivery"
TIMESTAMP_HEADER = "X-Chatbridge-Timestamp"
SIGNATURE_HEADER = "X-Chatbridge-Signature"
SIGNATURE_PREFIX = "sha256="
# How far a receiver lets a timestamp stray from its own clock, either way.
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The X-Chatbridge-Signature value for `body` sent at `timestamp` (unix seconds)."""
    return SIGNATURE_PREFIX + _mac(secret, body, str(timestamp))


def verify_signature(
    secret: str | bytes,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    now: float,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """Whether a request is ours and recent: the receiver's check, from the raw headers.

    `body` is the request body as received (bytes, before any JSON parsing); `now` is the
    receiver's clock in unix seconds.
    """
    if not timestamp.isascii() or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > tolerance_seconds:
        return False
    if not signature.startswith(SIGNATURE_PREFIX):
        return False
    expected = _mac(secret, body, timestamp)
    return hmac.compare_digest(expected, signature.removeprefix(SIGNATURE_PREFIX))


def _mac(secret: str | bytes, body: bytes, timestamp: str) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
