"""Property test: whatever arrives at the ingest endpoint, the answer is never a 5xx, and
every ``202`` stored exactly what was sent.

Hypothesis generates bodies (JSON with any text, numbers and nesting; form fields with
bracketed keys; raw bytes), content types, paths and headers, and sends them over real
HTTP to the real app on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from deskwire.database import make_engine, session_factory
from deskwire.tables import Event
from tests.test_webhooks import TOKEN
from tests.test_webhooks import web as web  # the fixture: real app on loopback
from webhooks.parsing import PLACEHOLDER

pytestmark = pytest.mark.integration

# Any code point, surrogates and control characters included.
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
NICE_TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
# Mostly text a database can hold, sometimes anything: both the 202 and the 4xx paths run.
TEXT = st.one_of(NICE_TEXT, NICE_TEXT, NICE_TEXT, ANY_TEXT)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | st.sampled_from(["$id", "${subject}", "costs $5", "", "\n", "request.created\n"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4)
    ),
    max_leaves=20,
)
DIGITS = st.from_regex(r"[0-9]{1,12}", fullmatch=True)
ID_VALUES = st.one_of(
    st.integers(min_value=0, max_value=10**12), DIGITS, DIGITS, ANY_TEXT, st.none()
)
KEY_NAMES = st.sampled_from(
    ["id", "request_id", "WORKORDERID", "event", "event_id", "subject", "request", "payload"]
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json",
        "application/json",
        "application/x-www-form-urlencoded",
        "application/json; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=fuzz",
        "text/plain",
        "application/octet-stream",
        "application/xml",
        "application/json; charset=latin-1",
        "",
    ]
) | NICE_TEXT.filter(lambda t: t.isascii() and t.isprintable() and t == t.strip())
PATHS = st.sampled_from(
    [
        "/webhooks/sdp/main/request.updated",
        "/webhooks/sdp/main/request.updated",
        "/webhooks/sdp/other/request.created",
        "/webhooks/sdp",
        "/webhooks/sdp/main",
        "/webhooks/sdp/main/request.created",
        "/webhooks/sdp/main/change.updated",
        "/webhooks/sdp/main/request.created%0A",
        "/webhooks/sdp/Main%00/x",
        "/webhooks/sdp/main/%24event",
    ]
)
# What an HTTP client can put in a header: no control characters, no surrounding spaces.
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=40,
).map(str.strip)


@st.composite
def json_bodies(draw: st.DrawFn) -> tuple[bytes, Any, str]:
    body = draw(st.dictionaries(KEY_NAMES | TEXT, JSON_VALUES, max_size=6))
    if draw(st.integers(0, 3)):
        body["request"] = {"id": draw(ID_VALUES), "subject": draw(ANY_TEXT)}
    raw = json.dumps(body, allow_nan=False).encode()
    depth = draw(st.sampled_from([0, 0, 0, 0, 0, 0, 10, 40, 990, 100_000]))
    if depth:  # spliced in as text: json.dumps itself would hit the recursion limit
        raw = raw[:-1] + (b", " if body else b"") + b'"deep": ' + b"[" * depth + b"]" * depth + b"}"
    if draw(st.integers(0, 5)) == 0:
        raw = raw.replace(b"0.5", b"NaN").replace(b"1.0", b"Infinity")
    return raw, body, "application/json"


@st.composite
def form_bodies(draw: st.DrawFn) -> tuple[bytes, Any, str]:
    keys = st.sampled_from(
        ["id", "request[id]", "request[subject]", "request[requester][email_id]", "a[]",
         "request", "payload", "event", "event_id", "x[y][z]", "a[][b]"]
    ) | NICE_TEXT  # fmt: skip
    values = NICE_TEXT | st.sampled_from(['{"id": 5}', "{broken", "$id", "[1]"])
    pairs = draw(st.lists(st.tuples(keys, values), max_size=8))
    raw = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode()
    if draw(st.integers(0, 4)) == 0:
        raw += draw(st.binary(max_size=20))
    return raw, None, "application/x-www-form-urlencoded"


def multipart(raw_pairs: list[tuple[str, bytes]]) -> bytes:
    parts = [
        b'--fuzz\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
        + value + b"\r\n"
        for name, value in raw_pairs
    ]  # fmt: skip
    return b"".join(parts) + b"--fuzz--\r\n"


BODIES = (
    json_bodies()
    | form_bodies()
    | st.binary(max_size=200).map(lambda b: (b, None, ""))
    | st.lists(
        st.tuples(
            st.sampled_from(["id", "request", "r[a]", "", "event"]),
            DIGITS.map(str.encode) | st.binary(max_size=30),
        )
    ).map(lambda pairs: (multipart(pairs), None, "multipart/form-data; boundary=fuzz"))
)


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """One engine for all the examples of a test: a new one each would exhaust PostgreSQL."""
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def stored(sessions: sessionmaker[Session], source: str, event_id: str) -> Event:
    with sessions() as session:
        event = session.scalar(
            select(Event)
            .where(Event.source == source, Event.event_id == event_id)
            .order_by(Event.id.desc())
        )
    assert event is not None, f"202 for {event_id} but nothing stored"
    return event


def test_no_input_gets_a_5xx_and_every_202_is_stored_intact(
    web: Callable[..., str], sessions: sessionmaker[Session]
) -> None:
    base = web()

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(
        body=BODIES,
        other_type=st.none() | st.none() | CONTENT_TYPES,
        path=PATHS,
        event_type=st.none() | st.none() | HEADER_TEXT,
        event_id=st.none() | HEADER_TEXT,
        request_id=st.none() | HEADER_TEXT,
        chunked=st.booleans(),
    )
    def check(
        body: tuple[bytes, Any, str],
        other_type: str | None,
        path: str,
        event_type: str | None,
        event_id: str | None,
        request_id: str | None,
        chunked: bool,
    ) -> None:
        raw, sent, natural_type = body
        content_type = natural_type if other_type is None else other_type
        headers = {"X-Deskwire-Token": TOKEN}
        if content_type:
            headers["Content-Type"] = content_type
        for name, value in (
            ("X-Deskwire-Event", event_type),
            ("X-Deskwire-Event-Id", event_id),
            ("X-Deskwire-Request-Id", request_id),
        ):
            if value is not None:
                headers[name] = value
        encoded = {k: v.encode("latin-1") for k, v in headers.items()}
        halves = [part for part in (raw[: len(raw) // 2], raw[len(raw) // 2 :]) if part]
        content: Any = iter(halves) if chunked else raw
        response = httpx.post(base + path, content=content, headers=encoded, timeout=30)
        assert response.status_code < 500, (response.status_code, response.text, raw[:300])
        event(f"{response.status_code} {response.json().get('error', '')}")
        assert response.headers["Content-Type"].startswith("application/json")
        if response.status_code == 200:
            assert response.json()["status"] == "duplicate"
            return
        if response.status_code != 202:
            assert 400 <= response.status_code < 500
            assert response.json()["message"]
            return
        source = path.split("/")[3] if path.count("/") >= 3 else "sdp"
        event_row = stored(sessions, source, response.json()["event_id"])
        if sent is not None and content_type.startswith("application/json"):
            assert event_row.payload == json.loads(raw)  # exactly what was sent
        assert json.dumps(event_row.payload, ensure_ascii=False).encode("utf-8")  # valid text

    check()


PLAIN_TEXT = NICE_TEXT.filter(lambda t: not PLACEHOLDER.fullmatch(t))
PLAIN_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | PLAIN_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(PLAIN_TEXT, children, max_size=4)
    ),
    max_leaves=25,
)
FIELD_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(
    lambda name: (
        name
        not in {"id", "request", "request_id", "workorderid", "payload", "data", "json", "body"}
        and not name.startswith("event")
    )
)
FORM_VALUES = PLAIN_TEXT.filter(lambda t: not t.lstrip().startswith("{"))


def test_every_well_formed_body_is_accepted_and_stored_intact(
    web: Callable[..., str], sessions: sessionmaker[Session]
) -> None:
    """The other half: valid bodies with any text, numbers and nesting all get a 202."""
    base = web()

    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(
        fields=st.dictionaries(PLAIN_TEXT, PLAIN_JSON, max_size=6),
        form_fields=st.dictionaries(FIELD_NAMES, FORM_VALUES, max_size=6),
        request_id=DIGITS,
        shape=st.sampled_from(["json", "json-as-text", "json-untyped", "form", "form-untyped"]),
        chunked=st.booleans(),
    )
    def check(
        fields: dict[str, Any],
        form_fields: dict[str, str],
        request_id: str,
        shape: str,
        chunked: bool,
    ) -> None:
        event_id = uuid.uuid4().hex
        headers = {"X-Deskwire-Token": TOKEN, "X-Deskwire-Event-Id": event_id}
        if shape.startswith("json"):
            sent: dict[str, Any] = {**fields, "request": {"id": request_id, "extra": fields}}
            for envelope in ("event", "event_id", "event_type", "request_id", "requestObj"):
                sent.pop(envelope, None)  # where ids are read from: covered by the test above
            for on_prem in ("WORKORDERID", "workorderid"):
                sent.pop(on_prem, None)
            raw = json.dumps(sent).encode()
            headers["Content-Type"] = {
                "json": "application/json",
                "json-as-text": "text/plain",
            }.get(shape, "")
        else:
            sent = {**form_fields, "id": request_id}
            raw = "&".join(f"{quote(k)}={quote(v)}" for k, v in sent.items()).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded" if shape == "form" else ""
        if not headers["Content-Type"]:
            del headers["Content-Type"]
        halves = [part for part in (raw[: len(raw) // 2], raw[len(raw) // 2 :]) if part]
        response = httpx.post(
            base + "/webhooks/sdp/main/request.updated",
            content=iter(halves) if chunked else raw,
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 202, (response.text, raw[:300])
        event_row = stored(sessions, "main", event_id)
        assert event_row.payload == sent
        assert event_row.request_id == request_id

    check()
