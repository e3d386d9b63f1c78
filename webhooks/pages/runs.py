"""The admin pages under ``/runs``: the run history, one run, and replaying a failed run.

The same sign-in as the connection pages (:func:`webhooks.pages.guard.admin_gate`, one
session cookie); every POST carries the session's CSRF token. Payloads are shown
redacted (:func:`deskwire.run_history.redact`): credential-looking keys, and any value that
holds a configured secret (webhook tokens, keys, the admin password).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    Flask,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from deskwire import event_store, wait_store
from deskwire.run_history import RunFilters, list_runs, run_detail, sources
from deskwire.settings import Settings
from deskwire.tables import REQUEST_ID, EventStatus, WaitState
from webhooks.context import web_context
from webhooks.pages.blueprint import EXTENSION, PAGES_ROOT
from webhooks.pages.guard import admin_gate, admin_signed_in, csrf_field
from webhooks.pages.problems import problem_page
from webhooks.security_headers import SECURITY_HEADERS

__all__ = ["bp", "register_runs_pages"]

log = logging.getLogger(__name__)

bp = Blueprint(
    "runs_pages",
    __name__,
    url_prefix="/runs",
    template_folder="templates",
    root_path=PAGES_ROOT,
)

PER_PAGE = 50
_MAX_PAGE = 100_000
# The app's headers; and these pages' forms post only to these pages (no connect form).
_SECURITY_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": SECURITY_HEADERS["Content-Security-Policy"] + "; form-action 'self'",
}
_TIME_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def register_runs_pages(app: Flask, settings: Settings) -> None:
    """Add the ``/runs`` pages to ``app`` (after :func:`register_connection_pages`)."""
    if EXTENSION not in app.extensions:
        raise RuntimeError("register the connection pages first: the runs pages share the sign-in")
    secrets = [k.get_secret_value() for k in settings.secret_key]
    secrets += [t.get_secret_value() for t in settings.webhook_tokens]
    for single in (settings.admin_password, settings.webhook_hmac_secret):
        if single is not None:
            secrets.append(single.get_secret_value())
    app.extensions["deskwire_runs_pages"] = tuple(s for s in secrets if len(s) >= 4)
    app.register_blueprint(bp)


def _secrets() -> tuple[str, ...]:
    from flask import current_app

    found: tuple[str, ...] = current_app.extensions["deskwire_runs_pages"]
    return found


def _problem(status: int, title: str, message: str) -> ResponseReturnValue:
    return problem_page(status, title, message, back=url_for("runs_pages.index"))


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    settings = web_context().settings
    if settings.admin_password is None or not settings.secret_key:
        return _problem(
            503,
            "Runs pages are off",
            "The runs pages need an admin password and a secret key: set "
            "DESKWIRE_ADMIN_PASSWORD and DESKWIRE_SECRET_KEY and restart the web process.",
        )
    return admin_gate("runs pages", "runs_pages.index")


@bp.after_request
def _headers(response: Response) -> Response:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    return {"signed_in": admin_signed_in(), "csrf_field": csrf_field}


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    status = exc.code or 500
    if status >= 500:
        return _problem(status, "Something went wrong", "The web process's log has the details.")
    return _problem(status, exc.name or "Error", exc.description or "")


# ---- the list ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Form:
    """The filter form as given (to fill it back in) and what it means."""

    values: dict[str, str]
    filters: RunFilters
    page: int
    problems: tuple[str, ...]


def _when(name: str, value: str, problems: list[str]) -> datetime | None:
    if not value:
        return None
    for pattern in _TIME_FORMATS:
        try:
            return datetime.strptime(value, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    problems.append(f"{name} {value[:40]!r} is not a time; write YYYY-MM-DD or YYYY-MM-DDTHH:MM")
    return None


def _read_form(args: MultiDict[str, str]) -> _Form:
    """The filters in the query string; bad values are reported, never a 5xx."""
    keys = ("status", "rule", "request", "source", "since", "until")
    values = {key: (args.get(key) or "").strip()[:200] for key in keys}
    problems: list[str] = []
    status = values["status"] or None
    if status is not None and status not in {s.value for s in EventStatus}:
        problems.append(
            f"status {status[:40]!r} is not one of {', '.join(s.value for s in EventStatus)}"
        )
        status = None
    request_id = values["request"] or None
    if request_id is not None and not REQUEST_ID.match(request_id):
        problems.append("request id may hold only letters, digits, '_' and '-' (up to 100)")
        request_id = None
    for key in ("rule", "source"):
        if len(values[key]) > 100:
            problems.append(f"{key} is longer than 100 characters")
            values[key] = ""
    since = _when("from", values["since"], problems)
    until = _when("until", values["until"], problems)
    if since is not None and until is not None and until <= since:
        problems.append("'until' must be later than 'from'")
    page_text = (args.get("page") or "1").strip()
    page = int(page_text) if page_text.isdigit() and 0 < int(page_text) <= _MAX_PAGE else 0
    if page == 0:
        problems.append(f"page {page_text[:20]!r} is not a page number (1 to {_MAX_PAGE})")
        page = 1
    filters = RunFilters(
        status=status,
        rule=values["rule"] or None,
        request_id=request_id,
        source=values["source"] or None,
        since=since,
        until=until,
    )
    return _Form(values, filters, page, tuple(problems))


@bp.get("")
def index() -> ResponseReturnValue:
    """The events, newest first, filtered and paged."""
    form = _read_form(request.args)
    sessions = web_context().sessions
    page = list_runs(sessions, form.filters, page=form.page, per_page=PER_PAGE)
    filled: dict[str, Any] = {key: value for key, value in form.values.items() if value}

    def page_url(number: int) -> str:
        return url_for("runs_pages.index", **filled, page=number)

    body = render_template(
        "runs/list.html",
        form=form.values,
        problems=form.problems,
        runs=page,
        statuses=[s.value for s in EventStatus],
        sources=sources(sessions),
        previous_url=page_url(page.page - 1) if page.page > 1 else None,
        next_url=page_url(page.page + 1) if page.has_next else None,
    )
    return body, 400 if form.problems else 200


# ---- one run -----------------------------------------------------------------------------


@bp.get("/<int:pk>")
def detail(pk: int) -> ResponseReturnValue:
    """One event: payload (redacted), each rule and why, each step, and replay if failed."""
    found = run_detail(web_context().sessions, pk, _secrets())
    if found is None:
        return _problem(404, "No such run", f"There is no event {pk} (purged, or never stored).")
    sessions = web_context().sessions
    return render_template(
        "runs/detail.html",
        run=found,
        waits=wait_store.list_waits(sessions, states=None, event_pk=pk),
        cancelled_here=wait_store.cancelled_by_event(sessions, pk),
    )


@bp.post("/<int:pk>/replay")
def replay(pk: int) -> ResponseReturnValue:
    """Queue a failed event again, as ``deskwire events replay`` does."""
    context = web_context()
    found = run_detail(context.sessions, pk, ())
    if found is None:
        return _problem(404, "No such run", f"There is no event {pk}.")
    if not found.replayable or not event_store.replay(context.sessions, pk):
        flash(
            f"Event {pk} was not replayed: only failed events are (it is {found.run.status}).",
            "warning",
        )
        return redirect(url_for("runs_pages.detail", pk=pk), 303)
    try:
        context.queue.enqueue(pk, event_type=found.run.event_type, request_id=found.run.request_id)
    except Exception as exc:  # noqa: BLE001 - stored as queued; the sweeper dispatches it
        log.warning("runs pages: event %s replayed, broker unavailable (%s)", pk, exc)
        flash(
            f"Event {pk} is queued again; the broker did not answer, a worker sends it later.",
            "warning",
        )
    else:
        event_store.mark_dispatched(context.sessions, pk)
        flash(f"Event {pk} is queued again.", "ok")
    log.info("runs pages: event %s replayed", pk)
    return redirect(url_for("runs_pages.detail", pk=pk), 303)


# ---- waits -------------------------------------------------------------------------------


@bp.get("/waits")
def waits() -> ResponseReturnValue:
    """The waits of rules (`uses: wait`): waiting ones soonest first, or all (``?all=1``)."""
    show_all = request.args.get("all") == "1"
    found = wait_store.list_waits(
        web_context().sessions, states=None if show_all else (WaitState.WAITING,)
    )
    return render_template("runs/waits.html", waits=found, show_all=show_all)


@bp.post("/waits/<int:wait_id>/cancel")
def cancel_wait(wait_id: int) -> ResponseReturnValue:
    """Cancel a waiting wait, as ``deskwire waits cancel`` does."""
    outcome = wait_store.cancel(web_context().sessions, wait_id, by="the runs page")
    if outcome == "missing":
        return _problem(404, "No such wait", f"There is no wait {wait_id}.")
    if outcome == "not_waiting":
        flash(f"Wait {wait_id} was not cancelled: it no longer waits.", "warning")
    else:
        log.info("runs pages: wait %s cancelled", wait_id)
        flash(f"Wait {wait_id} is cancelled; the rest of its rule will not run.", "ok")
    return redirect(url_for("runs_pages.waits"), 303)
