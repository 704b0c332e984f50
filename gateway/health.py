"""``GET /health``: the database, Redis and every configured service's gRPC health."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.openapi import documented
from workpulse import postgres

Status = dict[str, str]


async def _database(request: Request) -> None:
    await postgres.ping(request.app.state.settings.database_url)


async def _redis(request: Request) -> None:
    await request.app.state.redis.ping()


async def _service(ch: grpc.aio.Channel) -> None:
    reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise RuntimeError("not serving")


async def _probe(name: str, check: asyncio.Future[None] | asyncio.Task[None]) -> tuple[str, Status]:
    try:
        await asyncio.wait_for(check, timeout=3)
        return name, {"status": "up"}
    except Exception as exc:
        return name, {"status": "down", "message": type(exc).__name__}


@documented(
    "Health of the database, Redis and every service",
    response="Health",
    auth=False,
    errors=(),
    responses={503: "Health"},
)
async def health(request: Request) -> JSONResponse:
    checks = [
        _probe("database", asyncio.ensure_future(_database(request))),
        _probe("redis", asyncio.ensure_future(_redis(request))),
    ]
    for name, ch in request.app.state.peers.channels.items():
        checks.append(_probe(name, asyncio.ensure_future(_service(ch))))
    results = dict(await asyncio.gather(*checks))
    up = {k: v for k, v in results.items() if v["status"] == "up"}
    down = {k: v for k, v in results.items() if v["status"] != "up"}
    body = {"status": "ok" if not down else "error", "info": up, "error": down, "details": results}
    return JSONResponse(body, status_code=200 if not down else 503)
