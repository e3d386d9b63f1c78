"""Shadow mode: a rule's steps run as live ones would, but what they send is only recorded.

Steps that call out (``sdp.*``, ``http.*``) render their templates and build their request
with the same action code as live, through :class:`ShadowClients`, whose HTTP clients
record each request (:mod:`worker.would_send`) instead of sending it; the step is stored
with status ``shadow`` and ``output = {"would_send": [...]}``. Other steps (``log``) run.

What later steps see: a shadow step has no outputs. A template that reads
``steps.<shadow step>`` renders as ``<known at run time: steps.…>`` in the would-send, and
an `if` that reads one is taken as true (the note says so), so every step's request shows.
No credential is read or fetched: a shadow step works with the connection not connected,
or not declared at all (the host then reads ``<no sdp connection configured>``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from functools import partial
from typing import Any

import httpx

from rules import Action, Rule, TemplateError, reads_step
from sdp import SdpClient
from sdp.metainfo import FieldLabels
from worker import history
from worker.errors import StepFailed, StepRetry
from worker.steps import Clients, StepCall, run_step
from worker.would_send import Address, RecordingTransport, WouldSend

log = logging.getLogger(__name__)
_recording: ContextVar[bool] = ContextVar("deskwire_shadow_recording", default=False)


class _NotSentFilter(logging.Filter):
    """httpx logs every request it hands to a transport as ``HTTP Request: … 200 OK``;
    for a recorded one that would read as a call made, so the line says it was not."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _recording.get() and isinstance(record.args, tuple) and len(record.args) >= 2:
            record.msg = "HTTP Request (shadow, not sent): %s %s"
            record.args = record.args[:2]
        return True


logging.getLogger("httpx").addFilter(_NotSentFilter())

CALLING_PREFIXES = ("sdp.", "http.")  # actions that call out; shadow records them instead
SHADOW_STATUS = "shadow"  # step status: its request was recorded, not sent


def calls_out(uses: str) -> bool:
    """Whether an action calls a service (and so is recorded, not run, in shadow mode)."""
    return uses.startswith(CALLING_PREFIXES)


class ShadowClients:
    """``worker.steps.Clients`` whose clients record requests into ``sends``; never send."""

    def __init__(self, live: Clients, sends: list[WouldSend]) -> None:
        self._live = live
        self._sends = sends

    def http(self, link: str | None, *, user: str | None = None) -> httpx.Client:
        """A client with the connection's base URL and Accept header, and no auth."""
        address = self._live.address(link, source="", sdp=False)
        base = address.base_url
        if link is not None and self._live.is_sdp(link):
            base = base.rstrip("/") + "/"  # as the connection's own client joins paths
        headers = {"Accept": address.accept} if address.accept else {}
        return httpx.Client(
            base_url=base, headers=headers, transport=RecordingTransport(address, self._sends)
        )

    def sdp(self, link: str | None, *, source: str) -> tuple[SdpClient, str]:
        """An SDP client for the step's SDP connection (resolved as live does)."""
        address = self._live.address(link, source=source, sdp=True)
        http = httpx.Client(transport=RecordingTransport(address, self._sends))
        # A label cache of its own: the empty local replies must never reach the live one.
        options: dict[str, Any] = {"onprem": address.onprem, "labels": FieldLabels()}
        if address.accept:
            options["accept"] = address.accept
        return SdpClient(http, address.base_url, **options), address.link or "sdp"

    def is_sdp(self, link: str) -> bool:
        """As live: whether ``link`` is a declared SDP connection."""
        return self._live.is_sdp(link)

    def address(self, link: str | None, *, source: str, sdp: bool) -> Address:
        """As live."""
        return self._live.address(link, source=source, sdp=sdp)


def would_send(clients: Clients, call: StepCall) -> list[dict[str, Any]]:
    """Run a step's action against recording clients; the requests it would have sent.

    The step fails where live would fail before sending anything (a request id that is not
    digits, a field SDP cannot take); what happens after the first recorded request follows
    from the local empty reply, not from the rule, and is not an error.
    """
    sends: list[WouldSend] = []
    token = _recording.set(True)
    try:
        run_step(ShadowClients(clients, sends), call)
    except StepRetry as exc:
        if not sends:
            raise StepFailed(str(exc)) from None
    except StepFailed:
        if not sends:
            raise
    finally:
        _recording.reset(token)
    return [send.to_dict() for send in sends]


def run_actions(
    clients: Clients,
    journal: history.Journal,
    event_pk: int,
    rule: Rule,
    context: dict[str, Any],
    call_for: partial[StepCall],
) -> str | None:
    """Run a matched shadow rule's steps; return the error that ended it, or ``None``.

    ``context`` is the rule's context (``steps`` holds what earlier tries' steps produced);
    ``call_for(uses, args)`` makes the :class:`StepCall` a step would be run with.
    """
    steps: dict[str, Any] = context["steps"]
    unknown: set[str] = set()  # shadow steps: no outputs
    first_error: str | None = None
    record = partial(history.record_step, event_pk=event_pk, rule_id=rule.id)
    for action in rule.actions:
        if action.id in steps:
            continue  # a `log` step that ran in an earlier try
        try:
            runs, note = _decide_if(action, context, unknown)
            if not runs:
                journal.add(partial(record, step_id=action.id, uses=action.uses,
                                    status="skipped", error="`if` was false"))  # fmt: skip
                continue
            if not calls_out(action.uses):
                result = run_step(clients, call_for(action.uses, action.render(context)))
                steps[action.id] = result.outputs
                journal.add(partial(record, step_id=action.id, uses=action.uses,
                                    status="succeeded", output=result.outputs))  # fmt: skip
                continue
            args, _unresolved = action.render_without(context, unknown)
            sent = would_send(clients, call_for(action.uses, args))
        except (StepFailed, StepRetry, TemplateError) as exc:
            journal.add(partial(record, step_id=action.id, uses=action.uses,
                                status="failed", error=str(exc)))  # fmt: skip
            message = f"step {action.id} ({action.uses}): {exc}"
            log.info("event %s shadow rule %s: %s", event_pk, rule.id, message)
            first_error = first_error or message
            if action.on_error == "continue":
                continue
            return first_error
        output: dict[str, Any] = {"would_send": sent}
        if note:
            output["note"] = note
        unknown.add(action.id)
        journal.add(partial(record, step_id=action.id, uses=action.uses,
                            status=SHADOW_STATUS, output=output))  # fmt: skip
    return first_error


def _decide_if(
    action: Action, context: Mapping[str, Any], unknown: set[str]
) -> tuple[bool, str | None]:
    """Whether the step runs, and a note when its `if` is taken as true because it reads
    the outputs of a shadow step (which has none)."""
    try:
        return action.should_run(context), None
    except TemplateError as exc:
        if not reads_step(exc, unknown):
            raise
        return (
            True,
            f"`if` reads {exc.variable}, known only when the rule is live: shown as if true",
        )
