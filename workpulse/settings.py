"""Typed settings read from the environment, validated once at start-up.

Each process declares one subclass of :class:`CommonSettings`; :func:`load` turns a
validation failure into a message naming the variable and exits with status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR_DEFAULT = Path(".data")

# How a transaction names its tenant (workpulse.db): ``set_config`` binds it as a
# parameter; ``set_local`` sends ``SET LOCAL``, the form Citus propagates to its workers.
TenantSetting = Literal["set_config", "set_local"]


class DatabaseSettings(BaseSettings):
    """What :func:`workpulse.db.create_engine` reads itself when an engine is made, so a
    property of the database deployment reaches every service without each entry point
    passing it along. :class:`CommonSettings` includes it: a bad value stops a process
    at start-up, naming the variable."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    tenant_setting: TenantSetting = Field(
        "set_config", description="set_config, or set_local when PostgreSQL is sharded by Citus"
    )


class CommonSettings(DatabaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: str = Field(description="PostgreSQL URL the services connect with")
    redis_url: str = Field(description="Redis URL (redis://, rediss:// or unix://)")
    redis_prefix: str = Field("wp", description="prefix of every Redis key (one per deployment)")
    data_dir: Path = Field(DATA_DIR_DEFAULT, description="local state: keys, embedded databases")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    otel_exporter_otlp_endpoint: str | None = Field(None, description="OTLP gRPC endpoint for traces")
    otel_sql_spans: bool = Field(False, description="a span per SQL statement (when tracing)")
    access_token_public_keys: str = Field(
        "", description="comma-separated PEM files of Ed25519 keys that verify access tokens"
    )
    service_private_key_file: Path | None = Field(None, description="PEM key minting service identities")
    service_public_key_file: Path | None = Field(None, description="PEM key verifying service identities")
    token_issuer: str = "workpulse-auth"
    token_audience: str = "workpulse"
    db_pool_size: int = Field(10, ge=1, le=200)

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_only(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()


class GrpcServiceSettings(CommonSettings):
    grpc_host: str = Field("127.0.0.1", description="address the gRPC server binds")
    grpc_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    shutdown_grace_seconds: float = Field(10.0, gt=0, description="drain time after SIGTERM")


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment or stop the process naming the bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper()
            lines.append(f"  {name}: {error['msg']}")
        sys.stderr.write("invalid configuration:\n" + "\n".join(lines) + "\n")
        raise SystemExit(2) from None
