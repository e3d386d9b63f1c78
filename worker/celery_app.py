"""The one Celery app of deskwire, configured for reliability in one place.

``create_celery`` is used by the worker (which also registers the tasks) and by the web
process's enqueue API (which only sends). Nothing connects at import time.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from deskwire.settings import Settings

QUEUE = "deskwire"


def celery_config(settings: Settings, broker_url: str) -> dict[str, Any]:
    """Celery settings: late acks, redelivery on worker loss, prefetch 1, JSON only."""
    return {
        "broker_url": broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_retry": True,
        # Never give up on the broker (Celery's default stops a worker after 100 tries);
        # the worker's own consumer bounds the wait between tries.
        "broker_connection_max_retries": None,
        "worker_consumer": "worker.consumer:PersistentConsumer",
        "deskwire_broker_reconnect_max": settings.broker_reconnect_max,
        "deskwire_heartbeat_interval": max(1.0, min(10.0, settings.worker_stale_after / 4)),
        "broker_transport_options": {
            # Must exceed the longest task plus any countdown, or Redis redelivers early.
            "visibility_timeout": settings.broker_visibility_timeout,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            # Notice a dead connection (e.g. Redis restarted) while idle, not only on use.
            "health_check_interval": 10,
            "socket_keepalive": True,
        },
        "task_default_queue": QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_soft_time_limit": settings.task_soft_time_limit,
        "task_time_limit": settings.task_time_limit,
        "worker_send_task_events": True,
        # Off: a second publish (to the events exchange) per task, a tenth of ingest. Flower
        # still shows every task from the worker's received/started/succeeded events.
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "worker_max_tasks_per_child": 1000,
        "enable_utc": True,
    }


def create_celery(settings: Settings, broker_url: str, *, amqp: type | None = None) -> Celery:
    """A configured Celery app (tasks are registered by ``worker.tasks.register``).

    ``amqp``: Celery's AMQP helper class; deskwire's own apps pass ``ReusedClientAMQP``
    (:mod:`worker.redis_transport`), the benchmark's baseline keeps Celery's (same settings).
    """
    app = Celery("deskwire", set_as_current=False, amqp=amqp)
    app.conf.update(celery_config(settings, broker_url))
    return app
