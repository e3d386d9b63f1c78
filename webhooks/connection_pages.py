"""The admin pages under ``/connections``: list, details, connect, revoke, delete, edit.

Every page except the sign-in page and the OAuth callback needs the admin password; every
POST carries the session's CSRF token. A browser connect starts with a POST and its callback
is only taken in the browser session that started it (see :mod:`webhooks.pages_security`).
Views call the :class:`~connections.Connections` facade and let its errors (whose messages
carry no secrets) become HTML problem pages.
No page ever shows a secret, not even masked: the forms for API keys and passwords are
never filled back in.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from connections import (
    ConnectionInUseError,
    Connections,
    ConnectionsConfigError,
    ConnectionsError,
    ConnectionSpec,
    ConnectionState,
    EditCheck,
    NotConfiguredError,
    NotConnectedError,
    NotEditableError,
    OAuth2Connection,
    OAuthCallbackError,
    SecretKeyError,
    TokenRequestError,
    TransientTokenError,
    UnknownConnectionError,
    UnsupportedOperationError,
    check_connection_edit,
    fixed_edit_problems,
)
from connections.config import NAME_MAX
from connections.yamlfile import dump_yaml
from deskwire.settings import Settings
from webhooks.pages_files import (
    FileEditError,
    adopt_connection,
    forget_connection,
    remove_declaration,
    write_connection_edit,
)
from webhooks.pages_security import (
    CSRF_FIELD,
    LoginThrottle,
    connect_started_here,
    csrf_token,
    csrf_valid,
    password_fingerprint,
    password_matches,
    remember_connect,
    session_key,
)

__all__ = ["admin_signed_in", "bp", "register_connection_pages"]

log = logging.getLogger(__name__)

bp = Blueprint(
    "connection_pages",
    __name__,
    url_prefix="/connections",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

_PUBLIC_ENDPOINTS = frozenset(
    {"connection_pages.login", "connection_pages.callback", "connection_pages.static"}
)
_SESSION_LIFETIME = timedelta(hours=8)
_STATE_LABELS: Mapping[str, str] = {
    ConnectionState.CONNECTED: "Connected",
    ConnectionState.NOT_CONNECTED: "Not connected",
    ConnectionState.NOT_CONFIGURED: "Not configured",
    ConnectionState.REVOKED: "Revoked",
    ConnectionState.NEEDS_RECONNECT: "Needs reconnect",
    "error": "Error",
}
_SCOPE_SPLIT = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class _Pages:
    """What the pages were registered with."""

    connections: Callable[[], Connections]
    settings: Settings
    used_by: Callable[[], Mapping[str, Sequence[str]]]
    key: bytes | None
    throttle: LoginThrottle


@dataclass(frozen=True)
class _Row:
    """One line of the connections list."""

    link_name: str
    name: str
    service_name: str
    auth: str
    grant_type: str | None
    state: str
    message: str
    used_by: tuple[str, ...]
    static: bool


def register_connection_pages(
    app: Flask,
    *,
    connections: Callable[[], Connections],
    settings: Settings,
    used_by: Callable[[], Mapping[str, Sequence[str]]],
    redis_client: redis.Redis,
) -> None:
    """Add the ``/connections`` pages to ``app``.

    ``connections`` returns this process's facade (built lazily); ``used_by`` maps each link
    name to the ids of the rules that use it; failed sign-ins are counted in
    ``redis_client``, shared by every web process. The session cookie (``deskwire_admin``,
    path ``/``, shared with the runs pages) is signed with a key derived from the newest
    ``DESKWIRE_SECRET_KEY``.
    """
    key = session_key(settings.secret_key[0].get_secret_value()) if settings.secret_key else None
    if key is not None:
        app.secret_key = key
    app.config.update(
        SESSION_COOKIE_NAME="deskwire_admin",
        # "/": the same sign-in serves the runs pages (/runs); SameSite keeps it off
        # cross-site posts, and no other route reads the session.
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=_SESSION_LIFETIME,
    )
    app.extensions["deskwire_connection_pages"] = _Pages(
        connections, settings, used_by, key, LoginThrottle(redis_client)
    )
    app.register_blueprint(bp)


def _pages() -> _Pages:
    pages: _Pages = current_app.extensions["deskwire_connection_pages"]
    return pages


def _facade() -> Connections:
    return _pages().connections()


# ---- guards ------------------------------------------------------------------------------


def admin_signed_in() -> bool:
    """Whether this request's session signed in with the current admin password."""
    pages = _pages()
    password = pages.settings.admin_password
    marker = session.get("admin")
    if pages.key is None or password is None or not isinstance(marker, str):
        return False
    expected = password_fingerprint(pages.key, password.get_secret_value())
    return password_matches(marker, expected)


def _safe_next(target: str | None) -> str:
    """Only a path of these pages may be a sign-in's destination (no open redirect)."""
    if target and not any(c in target for c in "\\\r\n"):
        parts = urlsplit(target)
        inside = parts.path.startswith(("/connections", "/runs"))
        if not parts.scheme and not parts.netloc and inside:
            return target
    return url_for("connection_pages.index")


def _problem(
    status: int,
    title: str,
    message: str,
    *,
    problems: Sequence[str] = (),
    back: str | None = None,
) -> ResponseReturnValue:
    body = render_template(
        "connections/problem.html",
        title=title,
        message=message,
        problems=problems,
        back=back or url_for("connection_pages.index"),
    )
    return body, status


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    pages = _pages()
    if request.endpoint == "connection_pages.static":
        return None  # the stylesheet, also for the "pages are off" page
    if pages.settings.admin_password is None:
        return _problem(
            503,
            "Connection pages are off",
            "The connection pages need an admin password: set DESKWIRE_ADMIN_PASSWORD in "
            "deskwire's environment and restart the web process.",
        )
    if pages.key is None:
        return _problem(
            503,
            "Connection pages are off",
            "The connection pages need a secret key: set DESKWIRE_SECRET_KEY in deskwire's "
            "environment and restart the web process.",
        )
    if request.endpoint not in _PUBLIC_ENDPOINTS and not admin_signed_in():
        target = request.path + (
            f"?{request.query_string.decode()}" if request.query_string else ""
        )
        if request.method != "GET":
            target = url_for("connection_pages.index")
        return redirect(url_for("connection_pages.login", next=target), 303)
    if request.method == "POST" and not csrf_valid():
        log.warning("connection pages: POST %s refused: CSRF token missing or wrong", request.path)
        return _problem(
            400,
            "Form refused",
            "The form's security token (CSRF) is missing or does not match your session. "
            "Reload the page and submit the form again.",
        )
    return None


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    signed_in = admin_signed_in()

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, csrf_token())

    return {"signed_in": signed_in, "csrf_field": csrf_field, "state_labels": _STATE_LABELS}


# ---- errors ------------------------------------------------------------------------------

_ERROR_STATUS: tuple[tuple[type[ConnectionsError], int, str], ...] = (
    (UnknownConnectionError, 404, "No such connection"),
    (OAuthCallbackError, 400, "Connect failed"),
    (NotEditableError, 400, "This change is not allowed"),
    (ConnectionInUseError, 409, "Connection in use"),
    (NotConfiguredError, 409, "Connection not configured"),
    (NotConnectedError, 409, "Not connected"),
    (UnsupportedOperationError, 400, "Not possible for this connection"),
    (TokenRequestError, 502, "The provider refused"),
    (TransientTokenError, 502, "The provider did not answer"),
    # Problems of deskwire's own configuration, not of the server: the page says what to fix
    # (a 5xx would read as a crash to the admin and to monitoring).
    (SecretKeyError, 409, "Stored credentials cannot be read"),
    (ConnectionsConfigError, 409, "The connections file has errors"),
)


@bp.errorhandler(ConnectionsError)
def _connections_error(exc: ConnectionsError) -> ResponseReturnValue:
    status, title = 400, "Connection error"
    for kind, code, heading in _ERROR_STATUS:
        if isinstance(exc, kind):
            status, title = code, heading
            break
    log.warning("connection pages: %s %s: %s", request.method, request.path, exc)
    problems: Sequence[str] = ()
    message = str(exc)
    if isinstance(exc, ConnectionsConfigError):
        problems = [str(issue) for issue in exc.errors]
        message = "Fix these in the connections file, then reload this page:"
        if request.method == "GET":
            status = 200  # the page itself worked: it shows the file's errors
    elif isinstance(exc, NotEditableError):
        problems = exc.problems
    return _problem(status, title, message, problems=problems)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    status = exc.code or 500
    if status >= 500:
        return _problem(
            status,
            "Something went wrong",
            "deskwire could not complete this page; the web process's log has the details.",
        )
    return _problem(status, exc.name or "Error", exc.description or "")


# ---- sign-in -----------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Sign in with the admin password; failed attempts are throttled per address."""
    pages = _pages()
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if admin_signed_in():
            return redirect(target, 303)
        return render_template("connections/login.html", next=target, error=None)
    client = request.remote_addr or "unknown"
    try:
        wait = pages.throttle.retry_after(client)
    except redis.RedisError as exc:
        # Without the shared count, guessing would be unthrottled: refuse for now.
        log.error("connection pages: sign-in refused, the throttle's Redis failed: %s", exc)
        return _problem(
            503,
            "Sign-in unavailable",
            "deskwire cannot reach Redis, which counts failed sign-ins; try again shortly.",
        )
    if wait is not None:
        minutes = max(1, round(wait / 60))
        error = f"Too many failed sign-ins from your address; try again in {minutes} min."
        body = render_template("connections/login.html", next=target, error=error)
        return body, 429, {"Retry-After": str(int(wait))}
    expected = pages.settings.admin_password
    assert expected is not None  # the guard answered 503 otherwise
    assert pages.key is not None
    if not password_matches(request.form.get("password", ""), expected.get_secret_value()):
        try:
            pages.throttle.failed(client)
        except redis.RedisError as exc:
            log.error("connection pages: could not count a failed sign-in: %s", exc)
        log.warning("connection pages: failed sign-in from %s", client)
        body = render_template("connections/login.html", next=target, error="Wrong password.")
        return body, 401
    try:
        pages.throttle.succeeded(client)
    except redis.RedisError as exc:
        log.error("connection pages: could not clear failed sign-ins: %s", exc)
    session.clear()  # a fresh session (and CSRF token) for the signed-in admin
    session.permanent = True
    session["admin"] = password_fingerprint(pages.key, expected.get_secret_value())
    csrf_token()
    log.info("connection pages: admin signed in from %s", client)
    return redirect(target, 303)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Sign out."""
    session.clear()
    flash("Signed out.", "ok")
    return redirect(url_for("connection_pages.login"), 303)


# ---- list and details --------------------------------------------------------------------


def _row(facade: Connections, spec: ConnectionSpec, used: Sequence[str]) -> _Row:
    try:
        status = facade.status(spec.link_name)
        state, message = status.state.value, status.message
    except ConnectionsError as exc:
        state, message = "error", str(exc)
    return _Row(
        link_name=spec.link_name,
        name=spec.name,
        service_name=spec.service.name,
        auth=spec.auth,
        grant_type=spec.token_grant,
        state=state,
        message=message,
        used_by=tuple(used),
        static=spec.static_credentials,
    )


@bp.get("")
def index() -> ResponseReturnValue:
    """Every declared connection with its status and actions."""
    facade = _facade()
    used = _pages().used_by()
    rows = [
        _row(facade, spec, used.get(link, ()))
        for link, spec in sorted(facade.config.connections.items())
    ]
    return render_template(
        "connections/list.html",
        rows=rows,
        config_path=facade.config.path,
        config_exists=facade.config.exists,
        redirect_uri=facade.redirect_uri,
    )


def _rule_step(facade: Connections, spec: ConnectionSpec) -> str:
    """A rule step that calls through the connection, ready to paste under ``actions:``."""
    url = "https://api.example.com/path"
    if spec.service.sdp:
        try:
            url = facade.sdp_endpoint(spec.link_name).api_base + "/requests"
        except ConnectionsError:
            url = "https://sdp.example.com/api/v3/requests"
    elif spec.base_url:
        url = spec.base_url.rstrip("/") + "/"
    step = {
        "id": f"call_{spec.link_name}"[:50],
        "uses": "http.get",
        "with": {"connection": spec.link_name, "url": url},
    }
    return dump_yaml({"actions": [step]})


@bp.get("/<link>")
def detail(link: str) -> ResponseReturnValue:
    """One connection: how it authenticates (never a secret), its status, a rule step."""
    facade = _facade()
    spec = facade.spec(link)
    row = _row(facade, spec, _pages().used_by().get(link, ()))
    status = None
    if row.state != "error":
        status = facade.status(link)
    return render_template(
        "connections/detail.html",
        spec=spec,
        row=row,
        status=status,
        snippet=_rule_step(facade, spec),
        redirect_uri=facade.redirect_uri,
    )


# ---- connect -----------------------------------------------------------------------------


def _connect_kind(spec: ConnectionSpec) -> str:
    return spec.connect_kind.value


def _static_fields(spec: ConnectionSpec) -> list[tuple[str, str, bool]]:
    """(parameter name, label, secret) of each value an api_key/basic connection needs."""
    return [(field.name, field.label, field.secret) for field in spec.credential_fields]


def _connect_page(
    spec: ConnectionSpec, kind: str, *, error: str | None = None, status: int = 200
) -> ResponseReturnValue:
    body = render_template(
        "connections/connect.html",
        spec=spec,
        kind=kind,
        fields=_static_fields(spec) if kind == "form" else [],
        error=error,
        user=request.values.get("user", ""),
    )
    return body, status


@bp.route("/<link>/connect", methods=["GET", "POST"])
def connect(link: str) -> ResponseReturnValue:
    """GET: the connect page, whose form POSTs (with the CSRF token) to the same URL.

    POST: OAuth: start the attempt, remember it in the session, redirect to the provider.
    API key / Basic: store the form's values. Client credentials: fetch a token.
    """
    facade = _facade()
    spec = facade.spec(link)
    if spec.problem:
        raise NotConfiguredError(
            f"connection '{link}' is not configured: {spec.problem} in deskwire's "
            "environment and restart deskwire"
        )
    if spec.static_credentials:
        raise UnsupportedOperationError(
            f"connection '{link}' takes its credentials from the connections file (values:); "
            "change them there"
        )
    kind = _connect_kind(spec)
    user = (request.values.get("user") or "").strip() or None
    if request.method == "GET":
        # Never starts anything: a link from another site only shows this page.
        return _connect_page(spec, kind)
    if kind == "redirect":
        if spec.per_user and user is None:
            return _connect_page(spec, kind, error="Say which user connects.", status=400)
        attempt = facade.begin_connect(link, user=user)
        remember_connect(attempt.key)
        log.info("connection pages: connect %s started (redirect to the provider)", link)
        return redirect(attempt.url, 303)
    if kind == "client_credentials":
        status = facade.refresh(link, user=user)
        flash(f"{link}: {status.message}", "ok")
        return redirect(url_for("connection_pages.index"), 303)
    values = {name: request.form.get(f"value-{name}", "") for name, _, _ in _static_fields(spec)}
    try:
        status = facade.connect_static(link, values, user=user)
    except (UnsupportedOperationError, UnknownConnectionError):
        raise
    except ConnectionsError as exc:
        return _connect_page(spec, kind, error=str(exc), status=400)
    log.info("connection pages: %s connected from the form", link)
    flash(f"{link}: {status.message}.", "ok")
    return redirect(url_for("connection_pages.index"), 303)


@bp.get("/callback")
def callback() -> ResponseReturnValue:
    """Where every OAuth provider sends the browser back; the state names the connection.

    Only a callback for an attempt this browser session started is taken (checked before
    the state is looked up, so a refused callback spends nothing).
    """
    query = request.args.to_dict()
    if not connect_started_here(Connections.callback_key(query)):
        log.warning("connection pages: callback refused: not started in this browser session")
        return _problem(
            400,
            "Connect refused",
            "This callback does not belong to a connect started in this browser session, so "
            "nothing was stored. Open the connection's page, press Connect and finish "
            "signing in at the provider in the same browser you are signed in with here. "
            "(Started with `deskwire connections connect`? Then copy this page's whole "
            "address and run `deskwire connections connect LINK --code '<that address>'`.)",
        )
    link = _facade().complete_callback(query)
    log.info("connection pages: %s connected through the OAuth callback", link)
    flash(f"{link}: connected.", "ok")
    return redirect(url_for("connection_pages.index"), 303)


# ---- revoke and delete -------------------------------------------------------------------


@bp.post("/<link>/revoke")
def revoke(link: str) -> ResponseReturnValue:
    """Revoke at the provider where possible, and forget the tokens."""
    user = (request.form.get("user") or "").strip() or None
    outcome = _facade().revoke(link, user=user)
    log.info("connection pages: %s revoked: %s", link, outcome.message)
    flash(f"{link}: {outcome.message}.", "warning" if outcome.provider_revoked is False else "ok")
    return redirect(url_for("connection_pages.index"), 303)


@bp.route("/<link>/delete", methods=["GET", "POST"])
def delete(link: str) -> ResponseReturnValue:
    """Confirm, then revoke, forget the tokens and remove the declaration from the file."""
    facade = _facade()
    spec = facade.spec(link)
    used_by = _pages().used_by()
    path = facade.config.path
    if request.method == "GET":
        rules = tuple(used_by.get(link, ()))
        return render_template("connections/delete.html", spec=spec, rules=rules, path=path)
    try:
        outcome = facade.delete(link, used_by)
    except ConnectionInUseError as exc:
        body = render_template(
            "connections/delete.html", spec=spec, rules=exc.rule_ids, path=path, refused=True
        )
        return body, 409
    try:
        removed = remove_declaration(path, link)
    except FileEditError as exc:
        flash(f"{link}: tokens forgotten, but the declaration stays: {exc}", "error")
        return redirect(url_for("connection_pages.index"), 303)
    if removed:
        forget_connection(facade, link)
        flash(f"{link}: deleted ({outcome.message}) and removed from {path}.", "ok")
    else:
        flash(f"{link}: tokens forgotten ({outcome.message}); {path} still declares it.", "ok")
    log.info("connection pages: %s deleted (declaration removed: %s)", link, removed)
    return redirect(url_for("connection_pages.index"), 303)


# ---- edit --------------------------------------------------------------------------------


def _proposed(spec: ConnectionSpec, form: Mapping[str, str]) -> tuple[ConnectionSpec, list[str]]:
    """The connection as the form would have it, and the form's own problems.

    Read-only fields (link name, auth type, grant type) are part of the form; a changed one
    is refused with the seeds' reason (:func:`fixed_edit_problems`).
    """
    problems = fixed_edit_problems(
        spec,
        link_name=form.get("link_name", spec.link_name),
        service=spec.service.key,
        auth=form.get("auth", spec.auth),
        grant_type=form.get("grant_type", spec.token_grant),
    )
    name = " ".join(form.get("name", "").split())
    if not name:
        problems.append("the display name cannot be empty")
    elif len(name) > NAME_MAX:
        problems.append(f"the display name has {len(name)} characters; at most {NAME_MAX}")
    name = name or spec.name
    given = list(dict.fromkeys(s for s in _SCOPE_SPLIT.split(form.get("scopes", "")) if s))
    if not isinstance(spec, OAuth2Connection):
        if given:
            problems.append(f"scopes apply to OAuth 2.0 connections; this one uses {spec.auth}")
        return replace(spec, name=name), problems
    scopes = spec.scopes
    if "scopes" in form:
        # Keep the declared order; new scopes go last. A missing one stays missing, so
        # the edit check sees (and refuses) the removal.
        kept = [s for s in spec.scopes if s in given]
        scopes = (*kept, *(s for s in given if s not in spec.scopes))
    return replace(spec, name=name, scopes=scopes), problems


@bp.route("/<link>/edit", methods=["GET", "POST"])
def edit(link: str) -> ResponseReturnValue:
    """Change the display name and add scopes (which revokes the connection)."""
    facade = _facade()
    spec = facade.spec(link)
    if request.method == "GET":
        return render_template(
            "connections/edit.html",
            spec=spec,
            name=spec.name,
            scopes="\n".join(spec.token_scopes),
            problems=(),
        )
    proposed, problems = _proposed(spec, request.form)
    check: EditCheck | None = None
    if not problems:
        try:
            check = check_connection_edit(spec, proposed)
        except NotEditableError as exc:
            problems = list(exc.problems)
    if check is None or problems:
        body = render_template(
            "connections/edit.html",
            spec=spec,
            name=request.form.get("name", spec.name),
            scopes=request.form.get("scopes", "\n".join(spec.token_scopes)),
            problems=problems,
        )
        return body, 400
    if not check.changed:
        flash(f"{link}: nothing changed.", "ok")
        return redirect(url_for("connection_pages.detail", link=link), 303)
    edited = proposed
    try:
        write_connection_edit(
            facade.config.path,
            link,
            name=edited.name,
            scopes=edited.token_scopes if "scopes" in check.changed else None,
        )
    except FileEditError as exc:
        return _problem(409, "Not saved", str(exc))
    adopt_connection(facade, edited)
    log.info("connection pages: %s edited (%s)", link, ", ".join(check.changed))
    flash(f"{link}: saved ({', '.join(check.changed)} changed).", "ok")
    if check.revokes and not spec.static_credentials:
        outcome = facade.revoke(link)
        flash(f"{link}: {check.reason}. {outcome.message}.", "warning")
    return redirect(url_for("connection_pages.detail", link=link), 303)
