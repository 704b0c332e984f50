"""Gateway settings (environment variables; see the README's table)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from workpulse.settings import CommonSettings

PEERS = ("auth", "sessions", "ingest", "realtime", "scheduler")


class GatewaySettings(CommonSettings):
    gateway_host: str = Field("127.0.0.1", description="address the gateway binds")
    gateway_port: int = Field(3000, ge=1, le=65535, description="gateway HTTP port")
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS ('*' for any)")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest accepted request body")
    rpc_timeout_seconds: float = Field(10.0, gt=0, description="deadline of each call to a service")
    # Empty: X-Forwarded-For / X-Forwarded-Proto are ignored and the client address is the
    # TCP peer. Otherwise only peers listed here (addresses, CIDR networks, or '*') may
    # name the client: anyone else could pick an address per request and so walk past
    # the per-address sign-up and log-in limits.
    forwarded_allow_ips: str = Field(
        "", description="comma-separated proxy addresses/networks trusted for X-Forwarded-For ('*' for any)"
    )
    gateway_access_log: bool = Field(False, description="one INFO line per HTTP request (secrets masked)")
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

    def trusted_proxies(self) -> list[str]:
        return [p.strip() for p in self.forwarded_allow_ips.split(",") if p.strip()]

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _addresses_or_networks(cls, value: str) -> str:
        # uvicorn would take a typo for a host name that never matches: refuse it at start-up.
        for entry in (p.strip() for p in value.split(",")):
            if not entry or entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value
