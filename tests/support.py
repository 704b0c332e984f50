"""Test plumbing: free ports, real service processes, tokens, waiting on conditions."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
import httpx
import jwt
from grpc_health.v1 import health_pb2, health_pb2_grpc

from workpulse.identity import ServiceIdentity, key_id, load_private_key
from workpulse.supervisor import PROCESSES, ProcessSpec

ROOT = Path(__file__).resolve().parent.parent
S = TypeVar("S")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Awaits ``check`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


@dataclass(frozen=True)
class Caller:
    """A user with a token: ``md`` is the gRPC metadata carrying it, ``headers`` the HTTP ones."""

    id: str
    org: str
    role: str
    token: str

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


@dataclass
class InProcessServer(Generic[S]):
    """A service built by its own ``build`` on a free port, with a channel and stub to it."""

    running: Any
    channel: grpc.aio.Channel
    stub: S

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"


async def start_in_process(
    build: Callable[[Any], Awaitable[tuple[Any, Callable[[], Awaitable[None]]]]],
    settings: Any,
    stub_factory: Callable[[grpc.aio.Channel], S],
) -> tuple[InProcessServer[S], Callable[[], Awaitable[None]]]:
    running, cleanup = await build(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    server = InProcessServer(running, channel, stub_factory(channel))

    async def stop() -> None:
        await channel.close()
        await running.drain(1.0)
        await cleanup()

    return server, stop


class TokenFactory:
    """Mints tokens the way auth does (and forged ones for attack tests)."""

    def __init__(self, access_private: Path, service_private: Path, issuer: str, audience: str) -> None:
        self.access_key = load_private_key(access_private)
        self.kid = key_id(self.access_key.public_key())
        self.service_private = service_private
        self.issuer = issuer
        self.audience = audience

    def user(
        self,
        org: str | None = None,
        sub: str | None = None,
        role: str = "employee",
        *,
        ttl: int = 900,
        **overrides: Any,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub or str(uuid.uuid4()),
            "org": org or str(uuid.uuid4()),
            "role": role,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return jwt.encode(claims, self.access_key, algorithm="EdDSA", headers={"kid": self.kid})

    def service(self, name: str = "test") -> str:
        return ServiceIdentity(name, load_private_key(self.service_private), self.audience).token()


class AsgiClient:
    """An ASGI app behind an httpx client, as a browser at ``address`` would reach it.

    httpx's ASGI transport does not run the lifespan, so this drives the ASGI lifespan
    protocol itself (the app may be wrapped, e.g. by Socket.IO, so no Starlette internals).
    """

    def __init__(self, app: Any, address: str = "127.0.0.1") -> None:
        self.app = app
        self.address = address
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def _lifespan(self, event: str) -> None:
        await self._to_app.put({"type": f"lifespan.{event}"})
        reply = await asyncio.wait_for(self._from_app.get(), timeout=10)
        assert reply["type"] == f"lifespan.{event}.complete", reply

    async def __aenter__(self) -> httpx.AsyncClient:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._task = asyncio.create_task(self.app(scope, self._to_app.get, self._from_app.put))
        await self._lifespan("startup")
        transport = httpx.ASGITransport(app=self.app, client=(self.address, 40000))
        self._client = httpx.AsyncClient(transport=transport, base_url="http://gateway")
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()
        await self._lifespan("shutdown")
        await self._task


@dataclass
class ServiceProcess:
    """One real service process on a real port, with its output in a log file."""

    spec: ProcessSpec
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **self.env, "GRPC_PORT": str(self.port), self.spec.port_variable: str(self.port)}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.spec.module], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )

    def healthy(self) -> bool:
        if self.spec.http:
            try:
                return httpx.get(f"http://{self.address}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        with grpc.insecure_channel(self.address) as ch:
            try:
                reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
            except grpc.RpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.spec.name} exited ({self.proc.returncode}); see {self.log_path}")
            if self.healthy():
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.spec.name} not healthy within {timeout}s; see {self.log_path}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def restart(self) -> None:
        self.start()
        self.wait_healthy()

    async def restart_async(self, timeout: float = 30.0) -> None:
        """``restart`` off the event loop, so the test's streams keep running meanwhile."""
        await asyncio.to_thread(self.start)
        await asyncio.to_thread(self.wait_healthy, timeout)

    async def exited(self, timeout: float = 30.0) -> int:
        """Waits off the event loop for the process to end by itself; its exit status
        (negative: the signal that ended it)."""
        assert self.proc is not None
        return await asyncio.to_thread(self.proc.wait, timeout)


@dataclass
class Mesh:
    """Every process of ``PROCESSES`` (or a chosen subset) running on free ports."""

    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://{self.processes['gateway'].address}"

    def address(self, name: str) -> str:
        return self.processes[name].address

    def stop(self) -> None:
        for p in reversed(list(self.processes.values())):
            if p.proc is not None:
                p.stop()


def start_mesh(base_env: dict[str, str], log_dir: Path, only: tuple[str, ...] | None = None) -> Mesh:
    """Starts the mesh on free ports. A port found free can be taken by another process
    before ours binds it (meshes of other tests start meanwhile): a process that exits
    because its port is taken gets the whole mesh started again on new ports."""
    for attempt in range(3):
        try:
            return _start_mesh_once(base_env, log_dir, only)
        except _PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class _PortTaken(AssertionError):
    pass


def _start_mesh_once(base_env: dict[str, str], log_dir: Path, only: tuple[str, ...] | None) -> Mesh:
    specs = [s for s in PROCESSES if only is None or s.name in only]
    ports = {s.name: free_port() for s in specs}
    env = dict(base_env)
    for s in specs:
        env[s.address_variable] = f"127.0.0.1:{ports[s.name]}"
    mesh = Mesh()
    log_dir.mkdir(parents=True, exist_ok=True)
    for s in specs:
        mesh.processes[s.name] = ServiceProcess(s, ports[s.name], dict(env), log_dir / f"{s.name}.log")
    try:
        for p in mesh.processes.values():
            p.start()
        for p in mesh.processes.values():
            try:
                p.wait_healthy()
            except AssertionError as exc:
                if p.proc is not None and p.proc.poll() is not None and _port_in_use(p.log_path):
                    raise _PortTaken(str(exc)) from exc
                raise
    except BaseException:
        mesh.stop()
        raise
    return mesh


def _port_in_use(log_path: Path) -> bool:
    text = log_path.read_text(errors="replace")
    return "address already in use" in text.lower() or "failed to bind" in text.lower()
