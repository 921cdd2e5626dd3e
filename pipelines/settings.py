"""Settings of the feature dataflow deployable (one frozen object; env vars ``SHELFGUARD_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipelines import connectors


class FlowSettings(BaseSettings):
    """Configuration of ``shelfguard stream`` / ``python -m bytewax.run pipelines.stream:flow``."""

    model_config = SettingsConfigDict(env_prefix="SHELFGUARD_", frozen=True)

    source: Literal["kafka", "file"] = Field(
        "file", description="SHELFGUARD_SOURCE: read a Kafka topic or a JSONL file"
    )
    bootstrap: str = Field(
        connectors.DEFAULT_BOOTSTRAP, description="SHELFGUARD_BOOTSTRAP: Kafka bootstrap servers"
    )
    events_topic: str = Field(connectors.EVENTS_TOPIC, description="SHELFGUARD_EVENTS_TOPIC")
    dlq_topic: str = Field(connectors.DLQ_TOPIC, description="SHELFGUARD_DLQ_TOPIC")
    features_topic: str = Field(connectors.FEATURES_TOPIC, description="SHELFGUARD_FEATURES_TOPIC")
    tail: bool = Field(
        True, description="SHELFGUARD_TAIL: keep reading new messages (false: stop at the end)"
    )
    events_file: Path | None = Field(None, description="SHELFGUARD_EVENTS_FILE (source=file)")
    dlq_file: Path = Field(Path("dlq.jsonl"), description="SHELFGUARD_DLQ_FILE (source=file)")
    features_file: Path = Field(
        Path("features.jsonl"), description="SHELFGUARD_FEATURES_FILE: snapshots (source=file)"
    )
    batch_size: int = Field(1000, ge=1, description="SHELFGUARD_BATCH_SIZE: source batch size")
