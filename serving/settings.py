"""The one settings object of the approval service (``shelfguard serve``).

Every field is read from an environment variable ``SHELFGUARD_<FIELD>`` (upper case), e.g.
``SHELFGUARD_DATABASE_URL``. The object is frozen: build a new one to change anything.

Secrets have development defaults so that ``shelfguard serve`` works out of the box; with
``SHELFGUARD_ENV`` set to anything but ``dev`` the service refuses to start while a secret still
has its development default.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipelines.connectors import DEFAULT_BOOTSTRAP, EVENTS_TOPIC, SCORES_TOPIC

DEV_TOKEN_PEPPER = "dev-token-pepper-not-for-production"  # noqa: S105 - the dev default
DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")

ATP_TOPIC = "inventory.atp"
ALERTS_TOPIC = "inventory.alerts"
SCORES_DLQ_TOPIC = "inventory.scores.dlq"


class Environment(StrEnum):
    DEV = "dev"
    TEST = "test"
    PROD = "prod"


class ServiceSettings(BaseSettings):
    """Configuration of one service process. Env var per field: ``SHELFGUARD_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="SHELFGUARD_", frozen=True, extra="ignore")

    env: Environment = Field(Environment.DEV, description="dev | test | prod")
    database_url: str = Field(
        "sqlite:///shelfguard.db",
        description="SQLAlchemy URL; default: SQLite file in the working directory. "
        "PostgreSQL: postgresql+psycopg://user:pw@host:port/db",
    )
    policy_path: Path = Field(DEFAULT_POLICY, description="Governance policy YAML")
    token_pepper: SecretStr = Field(
        SecretStr(DEV_TOKEN_PEPPER),
        description="Server-side key mixed into API-token hashes (HMAC-SHA256)",
    )
    kafka_bootstrap: str | None = Field(
        DEFAULT_BOOTSTRAP,
        description="Kafka bootstrap servers for effects; empty = effects are logged, not sent",
    )
    events_topic: str = Field(EVENTS_TOPIC, description="Where cycle_count events go")
    atp_topic: str = Field(ATP_TOPIC, description="ATP updates for the channels")
    alerts_topic: str = Field(ALERTS_TOPIC, description="Risk alerts")
    scores_topic: str = Field(SCORES_TOPIC, description="Scores read by `alerts consume`")
    scores_dlq_topic: str = Field(SCORES_DLQ_TOPIC, description="Unreadable score messages")
    webhook_timeout_s: float = Field(5.0, gt=0, description="Per-attempt webhook timeout (s)")
    webhook_max_attempts: int = Field(5, ge=1, description="Attempts before dead-lettering")
    webhook_backoff_s: float = Field(
        1.0, ge=0, description="Retry n waits backoff × 2^(n−1) seconds"
    )
    background_interval_s: float = Field(
        2.0,
        ge=0,
        description="Period of the sweeper (expiry, webhook delivery) in `serve`; 0 = off",
    )
    ui_refresh_s: float = Field(
        5.0,
        ge=0.5,
        le=600,
        description="SHELFGUARD_UI_REFRESH_S: how often an open UI page checks for new alerts "
        "and recommendations",
    )

    @model_validator(mode="after")
    def _no_default_secrets_outside_dev(self) -> ServiceSettings:
        if self.env is not Environment.DEV and (
            self.token_pepper.get_secret_value() == DEV_TOKEN_PEPPER
        ):
            raise ValueError(
                "SHELFGUARD_TOKEN_PEPPER still has its development default; set a random secret "
                f"(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`) "
                f"or run with SHELFGUARD_ENV=dev (now {self.env.value})"
            )
        return self

    @property
    def kafka_enabled(self) -> bool:
        return bool(self.kafka_bootstrap)
