"""Channels to the services, created in the lifespan (nothing connects at import time)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from workpulse.grpc_client import channel
from workpulse.identity import ServiceIdentity

T = TypeVar("T")


class Peers:
    def __init__(self, addresses: dict[str, str], identity: ServiceIdentity | None, timeout: float) -> None:
        self.addresses = addresses
        self.identity = identity
        self.timeout = timeout
        self.channels: dict[str, grpc.aio.Channel] = {
            name: channel(address, default_timeout=timeout) for name, address in addresses.items()
        }
        self._stubs: dict[tuple[str, Any], Any] = {}

    def stub(self, name: str, factory: Callable[[grpc.aio.Channel], T]) -> T:
        """The (cached) stub of peer ``name``; 503 when that service is not deployed."""
        key = (name, factory)
        if key not in self._stubs:
            found = self.channels.get(name)
            if found is None:
                from gateway.errors import HTTPError

                raise HTTPError(503, f"{name} service is not configured")
            self._stubs[key] = factory(found)
        stub: T = self._stubs[key]
        return stub

    async def close(self) -> None:
        for ch in self.channels.values():
            await ch.close()
