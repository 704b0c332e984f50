"""Log-in is rate-limited per (organization, email) and per client address: 429 with
Retry-After through the gateway, RESOURCE_EXHAUSTED with a retry-after trailer over gRPC."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from tests.auth.conftest import PASSWORD, AuthServer, GatewayClient, Member, sign_up, start_auth, unique_email
from workpulse.auth.v1 import auth_pb2

PER_ACCOUNT = 3
PER_ADDRESS = 6
WINDOW = 600


@pytest.fixture(scope="module")
async def limited_server(settings_env: dict[str, str]) -> AsyncIterator[AuthServer]:
    # Counters of its own: the rest of the suite logs in from 127.0.0.1 too (the agent's
    # tests through the mesh), and the gRPC test below comes from that address.
    server, stop = await start_auth(
        login_attempts_per_account=PER_ACCOUNT,
        login_attempts_per_address=PER_ADDRESS,
        login_window_seconds=WINDOW,
        redis_prefix=f"{settings_env['REDIS_PREFIX']}:login-limits-{uuid.uuid4().hex[:8]}",
    )
    yield server
    await stop()


def _address() -> str:
    """A client address of this test alone, so the per-address counters start at zero."""
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


async def _log_in(client: httpx.AsyncClient, member: Member, password: str, email: str = "") -> httpx.Response:
    body = {"email": email or member.email, "password": password, "organization_id": member.org}
    return await client.post("/auth/login", json=body)


async def test_too_many_attempts_on_one_account_get_429_with_retry_after(limited_server: AuthServer) -> None:
    member = await sign_up(limited_server.stub)
    async with GatewayClient(limited_server.address, _address()) as client:
        for _ in range(PER_ACCOUNT):
            assert (await _log_in(client, member, "wrong password")).status_code == 401
        blocked = await _log_in(client, member, PASSWORD)  # even the right password waits now
        assert blocked.status_code == 429
        assert 0 < int(blocked.headers["retry-after"]) <= WINDOW
        assert set(blocked.json()) == {"statusCode", "message", "timestamp", "path"}
    # The limit is per account: someone else in the organization, from another address, logs in.
    async with GatewayClient(limited_server.address, _address()) as client:
        assert (await _log_in(client, member, PASSWORD)).status_code == 429
        other_email = unique_email()
        assert (await _log_in(client, member, PASSWORD, email=other_email)).status_code == 401


async def test_a_successful_log_in_clears_the_account_counter(limited_server: AuthServer) -> None:
    member = await sign_up(limited_server.stub)
    async with GatewayClient(limited_server.address, _address()) as client:
        for _ in range(PER_ACCOUNT - 1):
            assert (await _log_in(client, member, "wrong password")).status_code == 401
        assert (await _log_in(client, member, PASSWORD)).status_code == 200
        for _ in range(PER_ACCOUNT - 1):
            assert (await _log_in(client, member, "wrong password")).status_code == 401
        assert (await _log_in(client, member, PASSWORD)).status_code == 200


async def test_too_many_attempts_from_one_address_get_429(limited_server: AuthServer) -> None:
    member = await sign_up(limited_server.stub)
    address = _address()
    async with GatewayClient(limited_server.address, address) as client:
        for _ in range(PER_ADDRESS):
            assert (await _log_in(client, member, PASSWORD, email=unique_email())).status_code == 401
        blocked = await _log_in(client, member, PASSWORD)
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) > 0
    async with GatewayClient(limited_server.address, _address()) as elsewhere:
        assert (await _log_in(elsewhere, member, PASSWORD)).status_code == 200


async def test_rate_limit_over_grpc_is_resource_exhausted(limited_server: AuthServer) -> None:
    member = await sign_up(limited_server.stub)
    request = auth_pb2.LogInRequest(email=member.email, password="wrong password", organization_id=member.org)
    for _ in range(PER_ACCOUNT):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await limited_server.stub.LogIn(request)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await limited_server.stub.LogIn(request)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert int(dict(raised.value.trailing_metadata() or ())["retry-after"]) > 0


REGISTRATIONS = 2


@pytest.fixture(scope="module")
async def registration_limited_server(settings_env: dict[str, str]) -> AsyncIterator[AuthServer]:
    server, stop = await start_auth(registrations_per_address=REGISTRATIONS, registration_window_seconds=WINDOW)
    yield server
    await stop()


async def test_sign_ups_from_one_address_are_limited_with_retry_after(
    registration_limited_server: AuthServer,
) -> None:
    def body() -> dict[str, str]:
        return {"email": unique_email(), "password": PASSWORD, "name": "Ada", "organization_name": "Acme"}

    address = _address()
    async with GatewayClient(registration_limited_server.address, address) as client:
        for _ in range(REGISTRATIONS):
            assert (await client.post("/auth/register", json=body())).status_code == 201
        blocked = await client.post("/auth/register", json=body())
        assert blocked.status_code == 429
        assert 0 < int(blocked.headers["retry-after"]) <= WINDOW
    async with GatewayClient(registration_limited_server.address, _address()) as elsewhere:
        assert (await elsewhere.post("/auth/register", json=body())).status_code == 201
