"""Celery is configured for reliability in one place (issue 3, point 6)."""

from __future__ import annotations

from deskwire.settings import Settings
from worker.celery_app import create_celery
from worker.enqueue import PROCESS_EVENT, process_event_signature


def test_reliability_settings() -> None:
    settings = Settings(
        task_soft_time_limit="4m", task_time_limit="5m", broker_visibility_timeout="2h"
    )
    conf = create_celery(settings, "redis://127.0.0.1:1/0").conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (240, 300)
    assert conf.worker_send_task_events is True
    assert conf.task_send_sent_event is False  # costly; Flower uses the worker events
    # Redis must not redeliver a task that is still within its time limit.
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit


def test_task_names_read_well_in_flower() -> None:
    assert PROCESS_EVENT == "deskwire.process_event"
    assert (
        process_event_signature("request.created", "42")
        == "deskwire.process_event request.created #42"
    )
    assert (
        process_event_signature("request.created", None) == "deskwire.process_event request.created"
    )
