"""The auth process drains on SIGTERM: log-ins already being served (bcrypt at cost 12,
so they take a while) complete successfully, then the process exits 0."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import grpc
import redis.asyncio as aioredis

from tests.auth.conftest import PASSWORD
from tests.support import eventually, start_mesh
from workpulse.auth.v1 import auth_pb2, auth_pb2_grpc
from workpulse.redisconn import Keys

IN_FLIGHT = 4


async def test_sigterm_lets_in_flight_log_ins_finish_then_exits_0(
    mesh_env: dict[str, str], tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    prefix = f"{mesh_env['REDIS_PREFIX']}:{uuid.uuid4().hex[:6]}"
    env = {**mesh_env, "BCRYPT_ROUNDS": "12", "REDIS_PREFIX": prefix}
    mesh = start_mesh(env, tmp_path, only=("auth",))
    process = mesh.processes["auth"]
    try:
        async with grpc.aio.insecure_channel(process.address) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            signed = await stub.SignUp(
                auth_pb2.SignUpRequest(
                    email="drain@example.com", password=PASSWORD, name="Drain", organization_name="Drain Co"
                )
            )
            request = auth_pb2.LogInRequest(
                email="drain@example.com", password=PASSWORD, organization_id=signed.user.organization_id
            )
            calls = [asyncio.ensure_future(stub.LogIn(request, timeout=30)) for _ in range(IN_FLIGHT)]
            # Every call has counted itself against the address limit: all are inside the handler.
            counter = Keys(prefix).key("login", "address", "127.0.0.1")

            async def all_in_flight() -> bool:
                return int(await redis_client.get(counter) or 0) >= IN_FLIGHT

            await eventually(all_in_flight, what="every log-in being served")
            assert not any(c.done() for c in calls), "log-ins finished before SIGTERM; the test proves nothing"
            process.signal(signal.SIGTERM)
            replies = await asyncio.gather(*calls)
        assert all(r.user.id == signed.user.id for r in replies)
        assert process.proc is not None
        assert process.proc.wait(20) == 0
    finally:
        mesh.stop()
