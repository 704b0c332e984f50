"""The ``Idempotency-Key`` request header on every mutating route (IETF httpapi draft
"The Idempotency-Key HTTP Header Field"): a client without event ids can retry safely.

- Same key, same request (method, path, body) → the first answer is replayed, marked
  ``Idempotent-Replayed: true``; nothing runs again.
- Same key, another request → 422.
- Same key while the first is still running → 409 (retry later).
- Keys are per caller (the verified token's organization and user; the client address
  for routes without a token) and kept 24 hours. Answers of 5xx are not kept: the request
  did not happen as far as the client can tell, so its retry runs.

State lives in Redis, so every gateway replica sees the same keys (pure ASGI middleware,
the body is buffered once; bodies are already capped by ``BodySizeLimit``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from typing import Any

from redis.asyncio import Redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import error_response
from workpulse.errors import WorkPulseError
from workpulse.identity import TokenVerifier
from workpulse.redisconn import Keys

HEADER = b"idempotency-key"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KEEP_SECONDS = 24 * 3600
# How long past the gateway's RPC deadline a first attempt holds its key: no request takes
# longer (each route makes one call, under that deadline), so a key still held then belongs
# to a gateway that died mid-request, and the retry may run. Activity routes make that
# re-run safe: an event sent without an id carries one derived from the key
# (gateway.routes.activity), which ingest recognises.
IN_FLIGHT_MARGIN_SECONDS = 5
MAX_KEY_LENGTH = 255
_IN_FLIGHT = "in-flight"


class IdempotencyKeys:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
        raw_key = headers.get(HEADER)
        if raw_key is None or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        key = raw_key.decode("latin-1").strip()
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            message = f"Idempotency-Key: 1..{MAX_KEY_LENGTH} printable characters"
            await error_response(400, message, path)(scope, receive, send)
            return
        body, more = await _read_body(receive)
        if more is not None:  # the size limit refused the body: let the app answer that
            await self.app(scope, _replay(body, more), send)
            return
        state = scope["app"].state
        redis: Redis = state.redis
        keys: Keys = state.keys
        caller = _caller(state.verifier, headers, scope)
        slot = keys.key("idempotency", hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest())
        fingerprint = hashlib.sha256(b"\n".join([scope["method"].encode(), path.encode(), body])).hexdigest()

        in_flight = math.ceil(state.settings.rpc_timeout_seconds) + IN_FLIGHT_MARGIN_SECONDS
        claimed = await redis.set(slot, json.dumps({"state": _IN_FLIGHT, "fp": fingerprint}), nx=True, ex=in_flight)
        if not claimed:
            await _answer_from(await redis.get(slot), fingerprint, path, scope, receive, send)
            return
        recorded: dict[str, Any] = {"status": 500, "headers": [], "body": b""}

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                recorded["status"] = message["status"]
                recorded["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in message["headers"]]
            elif message["type"] == "http.response.body":
                recorded["body"] += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, _replay(body, None), recording)
        finally:
            if recorded["status"] < 500:
                kept = {
                    "state": "done",
                    "fp": fingerprint,
                    "status": recorded["status"],
                    "headers": recorded["headers"],
                    "body": base64.b64encode(recorded["body"]).decode(),
                }
                await redis.set(slot, json.dumps(kept), ex=KEEP_SECONDS)
            else:
                await redis.delete(slot)


async def _answer_from(
    found: str | bytes | None, fingerprint: str, path: str, scope: Scope, receive: Receive, send: Send
) -> None:
    if found is None:  # expired between the claim and the read: rare; ask for a retry
        await error_response(409, "Idempotency-Key: the first request with this key just ended; retry", path)(
            scope, receive, send
        )
        return
    kept = json.loads(found)
    if kept["fp"] != fingerprint:
        message = "Idempotency-Key: already used for another request (method, path or body differ)"
        await error_response(422, message, path)(scope, receive, send)
        return
    if kept["state"] == _IN_FLIGHT:
        await error_response(409, "Idempotency-Key: a request with this key is still in progress; retry later", path)(
            scope, receive, send
        )
        return
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in kept["headers"]]
    headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": kept["status"], "headers": headers})
    await send({"type": "http.response.body", "body": base64.b64decode(kept["body"])})


def _caller(verifier: TokenVerifier, headers: dict[bytes, bytes], scope: Scope) -> str:
    """Whose key space: the token's organization and user, else the client's address (an
    invalid token gets the address too; its request is refused by the route anyway)."""
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        try:
            principal = verifier.verify(token.strip())
            return f"user:{principal.organization_id}:{principal.subject}"
        except WorkPulseError:
            pass
    client = scope.get("client")
    return f"address:{client[0] if client else ''}"


async def _read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole body; or what was read and the first non-body message (a disconnect or
    the size limit's refusal), which is handed on unchanged."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replay(body: bytes, then: Message | None) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return then or {"type": "http.disconnect"}

    return receive
