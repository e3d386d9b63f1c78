"""Webhook authentication: a shared token, and an HMAC signature for senders that can sign."""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Mapping, Sequence

from werkzeug.datastructures import Headers

from webhooks.errors import WebhookError

SIGNATURE_TOLERANCE = 300  # seconds either side of now


def check_token(presented: str | None, accepted: Sequence[str]) -> None:
    """Raise 401 unless ``presented`` equals one accepted token (constant-time compare)."""
    if not accepted:
        raise WebhookError(
            401,
            "not_configured",
            "no webhook token is configured on this deskwire: set DESKWIRE_WEBHOOK_TOKENS",
        )
    if not presented:
        raise WebhookError(
            401, "missing_token", "send the webhook token in X-Deskwire-Token or ?token="
        )
    given = presented.encode()
    # Compare against every token so the time taken does not tell which one was close.
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(given, token.encode())
    if not matched:
        raise WebhookError(401, "bad_token", "the webhook token is not valid")


def check_signature(
    secret: str, headers: Mapping[str, str] | Headers, raw: bytes, *, now: float | None = None
) -> None:
    """Verify ``X-Deskwire-Signature: sha256=<hex>`` over ``<timestamp>.<raw body>``."""
    signature = headers.get("X-Deskwire-Signature", "")
    stamp = headers.get("X-Deskwire-Timestamp", "")
    if not signature or not stamp:
        raise WebhookError(
            401,
            "missing_signature",
            "this deskwire requires X-Deskwire-Signature and X-Deskwire-Timestamp headers",
        )
    try:
        sent_at = float(stamp)
    except ValueError:
        sent_at = math.nan
    if not math.isfinite(sent_at):
        raise WebhookError(401, "bad_signature", "X-Deskwire-Timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > SIGNATURE_TOLERANCE:
        raise WebhookError(
            401, "stale_signature", "X-Deskwire-Timestamp is more than 5 minutes from now"
        )
    algorithm, _, digest = signature.partition("=")
    if algorithm != "sha256" or not digest:
        raise WebhookError(401, "bad_signature", "X-Deskwire-Signature must be sha256=<hex>")
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    # Bytes, not str: compare_digest refuses non-ASCII text, which a client can send.
    if not hmac.compare_digest(expected.encode(), digest.strip().lower().encode()):
        raise WebhookError(401, "bad_signature", "X-Deskwire-Signature does not match the body")
