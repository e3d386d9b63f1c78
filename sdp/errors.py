"""Errors of SDP calls, split into the ones worth retrying and the ones that are final."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# SDP status codes that a retry can cure (internal error, rate limit); see sdp-api.md.
TRANSIENT_CODES = frozenset({4004, 4015})


def message_codes(messages: list[dict[str, Any]]) -> set[int]:
    """The numeric ``status_code`` of each SDP message that has one."""
    return {int(m["status_code"]) for m in messages if str(m.get("status_code", "")).isdigit()}


@dataclass
class SdpError(Exception):
    """SDP refused a call; ``str()`` says what, naming the field when SDP names one."""

    operation: str
    http_status: int | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    retry_after: float | None = None

    @property
    def codes(self) -> set[int]:
        """The ``status_code`` of each message SDP sent."""
        return message_codes(self.messages)

    def __str__(self) -> str:
        parts = []
        for message in self.messages:
            text = str(message.get("message") or message.get("type") or "failed")
            code = message.get("status_code")
            where = f" (field {message['field']})" if message.get("field") else ""
            parts.append(f"{code}: {text}{where}" if code else f"{text}{where}")
        detail = "; ".join(parts) or "no detail"
        if self.http_status:
            status = f"HTTP {self.http_status}"
        else:
            status = "no response" if isinstance(self, SdpTransientError) else "not sent"
        return f"SDP {self.operation} failed ({status}): {detail}"


class SdpTransientError(SdpError):
    """A failure a later retry may cure: transport error, 429, 5xx, SDP 4004/4015."""
