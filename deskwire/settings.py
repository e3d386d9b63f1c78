"""Settings from ``DESKWIRE_*`` environment variables: the one place they are read.

Library packages never read settings; entry points build a :class:`Settings` and hand
the values they need to ``rules``, ``connections``, ``sdp`` and the worker.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from configfiles import parse_duration

# The <source> of a webhook URL (webhooks.ingest checks the same shape).
_SOURCE = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")


def _split_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part) for part in value]


class SettingsError(Exception):
    """Settings could not be read; ``str()`` lists every bad variable and why."""


class Settings(BaseSettings):
    """Every setting of deskwire, each with a safe default."""

    model_config = SettingsConfigDict(env_prefix="DESKWIRE_", extra="ignore", frozen=True)

    broker_url: str | None = Field(
        default=None,
        description="Redis URL of the Celery broker; unset: `deskwire serve` starts its own Redis.",
    )
    database_url: str = Field(
        default="sqlite:///./var/deskwire.db",
        description="SQLAlchemy URL of the event and token store (SQLite or PostgreSQL).",
    )
    rules_dir: Path = Field(default=Path("./config/rules"), description="Folder of rule files.")
    connections_file: Path = Field(
        default=Path("./config/connections.yml"), description="The connections file."
    )
    secret_key: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Token encryption keys, newest first, comma separated (rotation).",
    )
    webhook_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Accepted webhook tokens, comma separated."
    )
    admin_password: SecretStr | None = Field(
        default=None, description="Password of the /connections admin pages."
    )
    flower_basic_auth: SecretStr | None = Field(
        default=None,
        description=(
            "Flower's sign-in as user:password (comma list for several); required when "
            "Flower listens beyond loopback."
        ),
    )
    webhook_hmac_secret: SecretStr | None = Field(
        default=None, description="Shared secret for X-Deskwire-Signature; unset: not required."
    )
    webhook_max_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Largest webhook body accepted, in bytes."
    )
    webhook_max_depth: int = Field(
        default=32,
        gt=0,
        le=200,
        description="Deepest nesting of a webhook body (JSON objects/arrays, bracketed keys).",
    )
    webhook_read_timeout: float = Field(
        default=2.0,
        gt=0,
        description="Longest pause while a webhook body arrives before it is refused (s).",
    )
    dedupe_window: Annotated[int, NoDecode] = Field(
        default=86400,
        description="How long a repeated event id, or a repeated request state of a webhook "
        "without one, counts as a duplicate.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The URL users and OAuth providers reach deskwire at.",
    )
    var_dir: Path = Field(default=Path("./var"), description="Where local state is kept.")
    task_soft_time_limit: Annotated[int, NoDecode] = Field(
        default=300, description="Soft time limit of one event's processing."
    )
    task_time_limit: Annotated[int, NoDecode] = Field(
        default=360, description="Hard time limit; the worker child is killed after it."
    )
    broker_visibility_timeout: Annotated[int, NoDecode] = Field(
        default=7200, description="When Redis redelivers an unacknowledged task."
    )
    max_attempts: int = Field(
        default=8, gt=0, description="Tries of a transient failure before the dead-letter list."
    )
    retry_backoff_max: Annotated[int, NoDecode] = Field(
        default=600, description="Longest wait between two tries."
    )
    http_timeout: float = Field(default=30.0, gt=0, description="Timeout of one outgoing call.")
    http_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Hosts, addresses and CIDRs that steps without a connection may call although "
            "they are loopback, private or link-local (comma list); unset: public only."
        ),
    )
    reload_interval: float = Field(
        default=2.0, gt=0, description="How often the rules folder is checked for edits (s)."
    )
    sweep_interval: float = Field(
        default=5.0, gt=0, description="How often a worker re-dispatches stranded events (s)."
    )
    lease_seconds: float = Field(
        default=30.0,
        ge=3,
        description="How long a running event stays claimed without its worker renewing it "
        "(renewed every third of it); after a worker dies, its event runs again this soon.",
    )
    redispatch_grace: float = Field(
        default=10.0,
        gt=0,
        description="How long a queued event may stay unclaimed after it was sent and due, "
        "with no message for it in the broker queue, before it is sent again (s).",
    )
    broker_reconnect_max: float = Field(
        default=10.0,
        gt=0,
        description="Longest wait between two attempts of a worker to reach the broker (s); "
        "it never stops trying.",
    )
    worker_stale_after: Annotated[int, NoDecode] = Field(
        default=60, description="Health: no worker heartbeat for this long means no worker."
    )
    queue_max_age: Annotated[int, NoDecode] = Field(
        default=300, description="Health: a due event waiting longer than this is a stuck queue."
    )
    purge_after: Annotated[int, NoDecode] = Field(
        default=0,
        ge=0,
        description=(
            "Workers delete finished events (and their run history) older than this, e.g. "
            "30d; 0 keeps everything."
        ),
    )
    reconcile_interval: Annotated[int, NoDecode] = Field(
        default=0,
        ge=0,
        description=(
            "How often a worker asks SDP for requests changed since the last change it saw, "
            "to run the changes whose webhook never came (e.g. 5m); 0 (default): off."
        ),
    )
    reconcile_lookback: Annotated[int, NoDecode] = Field(
        default=3600,
        gt=0,
        description="How far back the first reconciliation of a source looks (e.g. 1h).",
    )
    reconcile_delay: Annotated[int, NoDecode] = Field(
        default=120,
        ge=0,
        description=(
            "Reconciliation leaves changes younger than this to their webhook, and each run "
            "reads this much again before where the last one stopped (e.g. 2m)."
        ),
    )
    reconcile_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Sources to reconcile (comma list; each reads SDP through the connection its "
            "webhooks use); unset: every SDP connection, under its link name."
        ),
    )
    reconcile_max_calls: int = Field(
        default=20,
        gt=0,
        le=10000,
        description=(
            "Most SDP searches (100 requests each) one reconciliation run makes per source; "
            "the next run carries on where it stopped."
        ),
    )
    own_write_window: Annotated[int, NoDecode] = Field(
        default=300, description="How long a write of deskwire's is remembered to stop loops."
    )
    log_level: str = Field(default="INFO", description="Log level.")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text, or json: one JSON object per line with event, rule and step ids.",
    )
    sqlite_synchronous: Literal["full", "normal"] = Field(
        default="full",
        description=(
            "SQLite only: `full` (default) syncs every commit to disk; `normal` skips that "
            "sync and can lose the last commits (accepted events, step records) on a power "
            "cut or OS crash, never on a process crash. See docs/performance.md."
        ),
    )

    @field_validator(
        "secret_key", "webhook_tokens", "http_allow", "reconcile_sources", mode="before"
    )
    @classmethod
    def _comma_list(cls, value: Any) -> list[str]:
        return _split_list(value)

    @field_validator(
        "dedupe_window",
        "task_soft_time_limit",
        "task_time_limit",
        "broker_visibility_timeout",
        "retry_backoff_max",
        "own_write_window",
        "purge_after",
        "worker_stale_after",
        "queue_max_age",
        "reconcile_interval",
        "reconcile_lookback",
        "reconcile_delay",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> int:
        return parse_duration(value)

    @field_validator("flower_basic_auth")
    @classmethod
    def _flower_auth(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        for pair in value.get_secret_value().split(","):
            user, _, password = pair.strip().partition(":")
            if not user or not password:
                # The value is a secret: the message never repeats it.
                raise ValueError("must be user:password (a comma list for several users)")
        return value

    @field_validator("reconcile_sources")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        for source in value:
            if not _SOURCE.fullmatch(source):
                raise ValueError(
                    f"{source!r} is not a source name: use the <source> of your webhook URLs "
                    "(lower-case letters, digits, - and _), comma separated"
                )
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+", "postgres:")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        if value.startswith("postgres:"):
            value = "postgresql:" + value.removeprefix("postgres:")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if value.startswith(("unix://", "redis+socket://")):
            # Celery (kombu) and redis-py name a socket URL differently, and deskwire hands
            # the one URL to both: refused here rather than failing at the first publish.
            raise ValueError(
                "a Unix-socket broker is not supported; use a redis://host:port (or rediss://) URL"
            )
        if not value.startswith(("redis://", "rediss://")):
            raise ValueError("must be a redis:// or rediss:// URL")
        return value

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for a local setup)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _limits_fit(self) -> Settings:
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError(
                "DESKWIRE_TASK_SOFT_TIME_LIMIT must be shorter than DESKWIRE_TASK_TIME_LIMIT"
            )
        needed = self.task_time_limit + self.retry_backoff_max
        if self.broker_visibility_timeout <= needed:
            raise ValueError(
                "DESKWIRE_BROKER_VISIBILITY_TIMEOUT must exceed DESKWIRE_TASK_TIME_LIMIT plus "
                f"DESKWIRE_RETRY_BACKOFF_MAX ({needed}s), or Redis redelivers tasks still running"
            )
        if self.reconcile_interval:
            # A change reconciled after its claim expired would run a second time.
            if self.reconcile_lookback + self.reconcile_delay > self.dedupe_window:
                raise ValueError(
                    "DESKWIRE_RECONCILE_LOOKBACK plus DESKWIRE_RECONCILE_DELAY must not exceed "
                    f"DESKWIRE_DEDUPE_WINDOW ({self.dedupe_window}s): a change older than the "
                    "window could run twice"
                )
            # Reconciled changes deskwire made itself must still be known as its own.
            if self.reconcile_delay >= self.own_write_window:
                raise ValueError(
                    "DESKWIRE_RECONCILE_DELAY must be shorter than DESKWIRE_OWN_WRITE_WINDOW "
                    f"({self.own_write_window}s), or deskwire's own writes found by "
                    "reconciliation would run rules as if a person made them"
                )
        return self


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning pydantic's report into one clear message per bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["loc"]:
                message = f"DESKWIRE_{str(error['loc'][0]).upper()}: {message}"
            lines.append(message)  # a check across settings names its variables itself
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
