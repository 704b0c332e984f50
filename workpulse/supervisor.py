"""``workpulse up``: every service and the gateway as separate processes under one supervisor.

Starts the embedded databases when no URLs are given, creates development keys, applies
migrations, starts the processes, waits until each is healthy, prints the URLs, restarts
a process that dies, and on SIGINT/SIGTERM stops them all gracefully.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from workpulse.embedded import EmbeddedServers
from workpulse.identity import ensure_keypair
from workpulse.migrate import upgrade_all
from workpulse.restarts import RestartSchedule
from workpulse.settings import DATA_DIR_DEFAULT, load


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    module: str
    default_port: int
    http: bool = False

    @property
    def port_variable(self) -> str:
        return f"{self.name.upper()}_PORT"

    @property
    def address_variable(self) -> str:
        return f"{self.name.upper()}_ADDR"


# The mesh: one line per process. The gateway comes last so its peers are up first.
PROCESSES: tuple[ProcessSpec, ...] = (
    ProcessSpec("auth", "services.auth", 50051),
    ProcessSpec("sessions", "services.sessions", 50052),
    ProcessSpec("realtime", "services.realtime", 50054),
    ProcessSpec("ingest", "services.ingest", 50053),
    ProcessSpec("scheduler", "services.scheduler", 50055),
    ProcessSpec("gateway", "gateway", 3000, http=True),
)


class SupervisorSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = DATA_DIR_DEFAULT
    bind_host: str = Field("127.0.0.1", description="address every process binds")
    startup_timeout_seconds: float = Field(90.0, gt=0)
    shutdown_grace_seconds: float = Field(10.0, gt=0)


def port_of(spec: ProcessSpec) -> int:
    raw = os.environ.get(spec.port_variable, str(spec.default_port))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        sys.stderr.write(f"invalid configuration:\n  {spec.port_variable}: must be a port number\n")
        raise SystemExit(2)
    return int(raw)


def mesh_environment(database_url: str, redis_url: str, data_dir: Path, host: str) -> dict[str, str]:
    """The variables every child process gets: connections, keys and peer addresses."""
    keys = data_dir.resolve() / "keys"
    ensure_keypair(keys / "access_private.pem", keys / "access_public.pem")
    ensure_keypair(keys / "service_private.pem", keys / "service_public.pem")
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DATA_DIR": str(data_dir.resolve()),
        "ACCESS_TOKEN_PRIVATE_KEY_FILE": str(keys / "access_private.pem"),
        "ACCESS_TOKEN_PUBLIC_KEYS": str(keys / "access_public.pem"),
        "SERVICE_PRIVATE_KEY_FILE": str(keys / "service_private.pem"),
        "SERVICE_PUBLIC_KEY_FILE": str(keys / "service_public.pem"),
        "GRPC_HOST": host,
        "GATEWAY_HOST": host,
    }
    for spec in PROCESSES:
        env[spec.address_variable] = f"{host}:{port_of(spec)}"
    return env


class Supervisor:
    def __init__(self, settings: SupervisorSettings) -> None:
        self.settings = settings
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping = False

    def spawn(self, spec: ProcessSpec, env: dict[str, str]) -> None:
        port = str(port_of(spec))
        child_env = {**os.environ, **env, "GRPC_PORT": port, spec.port_variable: port}
        self.children[spec.name] = subprocess.Popen([sys.executable, "-m", spec.module], env=child_env)

    def restart_exited(self, restarts: RestartSchedule, env: dict[str, str]) -> None:
        """One look at every child: an exited one is scheduled, a due one started again;
        nothing here waits, so every process keeps being watched."""
        for spec in PROCESSES:
            child = self.children[spec.name]
            if child.poll() is None:
                continue
            restarts.exited(spec.name)
            if restarts.due(spec.name):
                print(f"workpulse: {spec.name} exited ({child.returncode}); restarting", file=sys.stderr)
                self.spawn(spec, env)
                restarts.started(spec.name)

    def wait_healthy(self, spec: ProcessSpec, host: str, deadline: float) -> None:
        port = port_of(spec)
        while time.monotonic() < deadline:
            child = self.children[spec.name]
            if child.poll() is not None:
                raise RuntimeError(f"{spec.name} exited with status {child.returncode} while starting")
            if _healthy(spec, host, port):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{spec.name} did not become healthy in time")

    def stop_all(self) -> None:
        self._stopping = True
        for child in reversed(list(self.children.values())):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds + 5
        for name, child in self.children.items():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"workpulse: {name} did not stop in time; killing it", file=sys.stderr)
                child.kill()
                child.wait()


def _healthy(spec: ProcessSpec, host: str, port: int) -> bool:
    if spec.http:
        try:
            return httpx.get(f"http://{host}:{port}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


MESH_FILE = "mesh.json"


def running_mesh_environment(data_dir: Path) -> dict[str, str] | None:
    """The environment of the mesh ``workpulse up`` runs from ``data_dir`` (its embedded
    databases, keys and peer addresses), for commands run beside it; None when none runs."""
    try:
        found: dict[str, str] = json.loads((data_dir / MESH_FILE).read_text())
    except FileNotFoundError:
        return None
    return found


def up() -> int:
    settings = load(SupervisorSettings)
    started = time.monotonic()
    embedded = EmbeddedServers(settings.data_dir)
    database_url = settings.database_url or embedded.postgres_url()
    redis_url = settings.redis_url or embedded.redis_url()
    supervisor = Supervisor(settings)
    stop_requested = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        upgrade_all(database_url)
        env = mesh_environment(database_url, redis_url, settings.data_dir, settings.bind_host)
        deadline = time.monotonic() + settings.startup_timeout_seconds
        restarts = RestartSchedule()
        for spec in PROCESSES:
            supervisor.spawn(spec, env)
            restarts.started(spec.name)
        for spec in PROCESSES:
            supervisor.wait_healthy(spec, settings.bind_host, deadline)
        # For `workpulse jobs run` beside the mesh: it finds the embedded databases here.
        mesh_file = settings.data_dir / MESH_FILE
        mesh_file.touch(mode=0o600)
        mesh_file.write_text(json.dumps(env))
        _print_urls(settings.bind_host, time.monotonic() - started)
        while not stop_requested:
            time.sleep(0.2)
            supervisor.restart_exited(restarts, env)
        return 0
    except RuntimeError as exc:
        print(f"workpulse: {exc}", file=sys.stderr)
        return 1
    finally:
        (settings.data_dir / MESH_FILE).unlink(missing_ok=True)
        supervisor.stop_all()
        embedded.stop()
        print("workpulse: stopped", file=sys.stderr)


def _print_urls(host: str, seconds: float) -> None:
    print(f"\nWorkPulse is up ({seconds:.1f}s):")
    for spec in PROCESSES:
        scheme = "http" if spec.http else "grpc"
        print(f"  {spec.name:<10} {scheme}://{host}:{port_of(spec)}")
    print("Press Ctrl-C to stop.\n", flush=True)
