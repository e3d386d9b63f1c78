"""The run history queries behind /runs: paging, filters, redaction (real database)."""

from __future__ import annotations

from datetime import timedelta

from deskwire.database import make_engine, session_factory, transaction
from deskwire.run_history import REDACTED, RunFilters, list_runs, redact
from deskwire.tables import Event, RuleRun, utcnow


def test_pages_hold_per_page_events_newest_first_and_say_if_more_follow(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    start = utcnow() - timedelta(hours=5)
    with transaction(sessions) as session:
        for n in range(120):
            event = Event(
                event_id=f"e{n}", source="a" if n % 2 else "b", event_type="request.created",
                request_id=str(n % 7), payload={}, status="failed" if n % 10 == 0 else "done",
                received_at=start + timedelta(minutes=n),
            )  # fmt: skip
            session.add(event)
            session.flush()
            session.add(RuleRun(event_pk=event.id, rule_id="r", matched=n < 5, outcome="done"))
    pages = [list_runs(sessions, RunFilters(), page=n, per_page=50) for n in (1, 2, 3, 4)]
    assert [len(p.rows) for p in pages] == [50, 50, 20, 0]
    assert [p.has_next for p in pages] == [True, True, False, False]
    ids = [row.event_id for p in pages for row in p.rows]
    assert ids == [f"e{n}" for n in reversed(range(120))]
    failed = list_runs(sessions, RunFilters(status="failed"), per_page=50)
    assert [r.event_id for r in failed.rows] == [f"e{n}" for n in range(110, -1, -10)]
    both = list_runs(sessions, RunFilters(status="done", source="a", request_id="3"))
    assert all((r.status, r.source, r.request_id) == ("done", "a", "3") for r in both.rows)
    assert both.rows
    window = RunFilters(since=start + timedelta(minutes=10), until=start + timedelta(minutes=13))
    assert [r.event_id for r in list_runs(sessions, window).rows] == ["e12", "e11", "e10"]
    matched = list_runs(sessions, RunFilters(rule="r"))
    assert [r.event_id for r in matched.rows] == ["e4", "e3", "e2", "e1", "e0"]
    engine.dispose()


def test_redaction_hides_credential_keys_and_secret_values_anywhere() -> None:
    payload = {
        "request": {"id": "1", "subject": "VPN", "udf": {"api_key": "k", "Password": "p"}},
        "token": "t",
        "headers": [{"Authorization": "Bearer x"}, {"note": "the token is s3cr3t-value here"}],
        "client_secret": "c",
        "count": 3,
    }
    shown = redact(payload, ["s3cr3t-value"])
    assert shown == {
        "request": {
            "id": "1",
            "subject": "VPN",
            "udf": {"api_key": REDACTED, "Password": REDACTED},
        },
        "token": REDACTED,
        "headers": [{"Authorization": REDACTED}, {"note": REDACTED}],
        "client_secret": REDACTED,
        "count": 3,
    }
    assert payload["token"] == "t"  # the stored payload is not changed
