"""Gateway settings (environment variables; see the README's table)."""

from __future__ import annotations

from pydantic import Field

from workpulse.settings import CommonSettings

PEERS = ("auth", "sessions", "ingest", "realtime", "scheduler")


class GatewaySettings(CommonSettings):
    gateway_host: str = Field("127.0.0.1", description="address the gateway binds")
    gateway_port: int = Field(3000, ge=1, le=65535, description="gateway HTTP port")
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS ('*' for any)")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest accepted request body")
    rpc_timeout_seconds: float = Field(10.0, gt=0, description="deadline of each call to a service")
    auth_addr: str | None = None
    sessions_addr: str | None = None
    ingest_addr: str | None = None
    realtime_addr: str | None = None
    scheduler_addr: str | None = None

    def peer_addresses(self) -> dict[str, str]:
        found = {name: getattr(self, f"{name}_addr") for name in PEERS}
        return {name: addr for name, addr in found.items() if addr}

    def allowed_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
