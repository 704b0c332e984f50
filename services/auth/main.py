"""Composition root of the auth service: settings, adapters, the gRPC server, the outbox relay."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import Field, field_validator

from services.auth import housekeeping
from services.auth.passwords import PasswordHasher
from services.auth.reporting_servicer import reporting_servicer
from services.auth.servicer import PUBLIC_METHODS, AuthServicer
from services.auth.tokens import AccessTokenMinter
from services.auth.use_cases import SCHEMA, Adapters, Policy
from workpulse import runtime
from workpulse.auth.v1 import auth_pb2_grpc
from workpulse.db import UnitOfWork, create_engine
from workpulse.grpc_server import RunningServer, Servicer, build_server, serve
from workpulse.identity import TokenVerifier, load_private_key, load_public_key
from workpulse.outbox import EVENTS_TOPIC, OutboxRelay, StreamPublisher
from workpulse.postgres import MAINTENANCE_ROLE
from workpulse.ratelimit import RateLimiter
from workpulse.redisconn import Keys, create_client
from workpulse.settings import GrpcServiceSettings, load

SERVICE = "auth"
SERVICE_NAME = "workpulse.auth.v1.AuthService"


class Settings(GrpcServiceSettings):
    access_token_private_key_file: Path = Field(description="PEM Ed25519 key that signs access tokens")
    access_token_ttl_seconds: int = Field(900, ge=60, le=86_400, description="access token lifetime")
    refresh_token_ttl_seconds: int = Field(30 * 86_400, ge=300, description="refresh token lifetime")
    invite_ttl_hours: int = Field(72, ge=1, le=720, description="default invite lifetime")
    # 12 in production; tests may lower it (never below bcrypt's minimum of 4) to stay fast.
    bcrypt_rounds: int = Field(12, ge=4, le=16, description="bcrypt work factor")
    login_attempts_per_account: int = Field(10, ge=1, description="per (organization, email) and window")
    login_attempts_per_address: int = Field(100, ge=1, description="per client address and window")
    login_window_seconds: int = Field(900, ge=1, description="rate-limit window of log-in attempts")
    registrations_per_address: int = Field(30, ge=1, description="sign-ups and invite registrations per address")
    registration_window_seconds: int = Field(3600, ge=1, description="rate-limit window of registrations")
    housekeeping_interval_seconds: float = Field(3600.0, gt=0, description="how often expired rows are purged")
    retention_days: int = Field(7, ge=1, description="days expired refresh tokens and invites are kept")

    @field_validator("access_token_private_key_file")
    @classmethod
    def _readable(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value


Cleanup = Callable[[], Awaitable[None]]


async def build(settings: Settings) -> tuple[RunningServer, Cleanup]:
    """Wires the real adapters and starts the server and the relay; returns them and their clean-up."""
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
    maintenance = create_engine(settings.database_url, role=MAINTENANCE_ROLE, pool_size=2)
    redis = create_client(settings.redis_url)
    keys = Keys(settings.redis_prefix)
    signing_key = load_private_key(settings.access_token_private_key_file)
    # Auth accepts its own signing key even when ACCESS_TOKEN_PUBLIC_KEYS omits it, and any
    # configured older key (rotation), which GetPublicKeys also publishes.
    access_keys = [
        signing_key.public_key(),
        *(load_public_key(Path(p.strip())) for p in settings.access_token_public_keys.split(",") if p.strip()),
    ]
    service_key = load_public_key(settings.service_public_key_file) if settings.service_public_key_file else None
    adapters = Adapters(
        uow=UnitOfWork(engine),
        passwords=await asyncio.to_thread(PasswordHasher, settings.bcrypt_rounds),
        access_tokens=AccessTokenMinter(
            signing_key,
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            lifetime_seconds=settings.access_token_ttl_seconds,
            verification_keys=access_keys,
        ),
        limiter=RateLimiter(redis),
        keys=keys,
        policy=Policy(
            refresh_token_ttl_seconds=settings.refresh_token_ttl_seconds,
            invite_ttl_hours=settings.invite_ttl_hours,
            login_attempts_per_account=settings.login_attempts_per_account,
            login_attempts_per_address=settings.login_attempts_per_address,
            login_window_seconds=settings.login_window_seconds,
            registrations_per_address=settings.registrations_per_address,
            registration_window_seconds=settings.registration_window_seconds,
        ),
        directory=UnitOfWork(maintenance),
    )
    servicer = AuthServicer(adapters)
    mount = Servicer(
        SERVICE_NAME, lambda server: auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server), PUBLIC_METHODS
    )
    running = await build_server(
        [mount, reporting_servicer(maintenance)],
        TokenVerifier(access_keys, service_key, issuer=settings.token_issuer, audience=settings.token_audience),
        host=settings.grpc_host,
        port=settings.grpc_port,
    )
    relay = OutboxRelay(
        maintenance,
        SCHEMA,
        {EVENTS_TOPIC: StreamPublisher(redis, keys, SERVICE)},
        listen_url=settings.database_url,
    )
    background = [
        asyncio.create_task(relay.run(), name="auth-outbox-relay"),
        asyncio.create_task(
            housekeeping.run(
                maintenance,
                retention_days=settings.retention_days,
                interval_seconds=settings.housekeeping_interval_seconds,
            ),
            name="auth-housekeeping",
        ),
    ]

    async def cleanup() -> None:
        await runtime.stop_tasks(background)
        await redis.aclose()
        await engine.dispose()
        await maintenance.dispose()

    return running, cleanup


async def _run(settings: Settings) -> None:
    running, cleanup = await build(settings)
    await serve(running, grace=settings.shutdown_grace_seconds, cleanup=cleanup)


def main() -> None:
    settings = load(Settings)
    runtime.start_process(SERVICE, settings)
    runtime.run(_run(settings))
