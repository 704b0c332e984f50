"""``workpulse-agent run``: the collector, the recorder, the uploader and the session watch.

Each runs as its own task; the first to fail for good (a sign-in revoked) ends the
agent with its message, and a clean stop (SIGTERM, Ctrl-C) stores the open event
first. Everything else is retried where it failed: a hung X call restarts the
collector, a lost stream reconnects, an unreachable gateway keeps the last session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from agent import status
from agent.collectors import choose_backend
from agent.collectors.logind import LockMonitor
from agent.collectors.watchdog import GuardedCollector
from agent.credentials import CredentialStore
from agent.gateway import Gateway
from agent.outbox import DEFAULT_CAP_BYTES, Outbox
from agent.policy import Policy
from agent.profile import OUTBOX, Profile
from agent.recorder import Recorder
from agent.session_watch import SessionWatch
from agent.tokens import TokenKeeper
from agent.uploader import Uploader
from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.ingest.v1 import ingest_pb2_grpc

logger = logging.getLogger("workpulse.agent")

POLICY = "policy"


class PolicyHolder:
    """The effective policy: fetched from ingest, kept in the outbox for offline starts."""

    def __init__(self, outbox: Outbox, channel: grpc.aio.Channel, tokens: TokenKeeper) -> None:
        self._outbox = outbox
        self._stub = ingest_pb2_grpc.IngestServiceStub(channel)
        self._tokens = tokens
        saved = outbox.get_state(POLICY)
        self.policy = Policy.from_json(saved) if isinstance(saved, dict) else Policy()
        self.fetched = isinstance(saved, dict)

    def current(self) -> Policy:
        return self.policy

    async def refresh(self) -> Policy:
        token = await self._tokens.access()
        reply = await self._stub.GetAgentPolicy(
            pb.GetAgentPolicyRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=10.0
        )
        fresh = Policy.from_proto(reply)
        if fresh != self.policy:
            logger.info("agent policy updated", extra={"fields": {"version": fresh.version}})
        self.policy = fresh
        self.fetched = True
        self._outbox.put_state(POLICY, fresh.to_json())
        return fresh


def ingest_channel(target: str, tls: bool) -> grpc.aio.Channel:
    options = [("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_permit_without_calls", 1)]
    if tls:
        return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(), options=options)
    return grpc.aio.insecure_channel(target, options=options)


async def run_agent(
    folder: Path, profile: Profile, *, tls: bool, cap_bytes: int = DEFAULT_CAP_BYTES, flush_seconds: float = 10.0
) -> None:
    outbox = Outbox(folder / OUTBOX, cap_bytes)
    gateway = Gateway(profile.gateway)
    tokens = TokenKeeper(gateway, CredentialStore(folder))
    channel = ingest_channel(profile.ingest, tls)
    collector = GuardedCollector(choose_backend())
    locks = LockMonitor()
    policy = PolicyHolder(outbox, channel, tokens)
    watch = SessionWatch(gateway, tokens, profile.user_id, outbox)

    async def policy_changed(version: int) -> None:
        if version != policy.policy.version:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await policy.refresh()
        uploader.link.policy_version = policy.policy.version

    recorder = Recorder(
        collector,
        outbox,
        policy.current,
        watch.current,
        locked=lambda: locks.locked,
        on_events=lambda: uploader.wake(),
        flush_seconds=flush_seconds,
    )
    uploader = Uploader(outbox, channel, tokens, on_policy_version=policy_changed, on_session_ended=watch.ended)
    try:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await policy.refresh()
        uploader.link.policy_version = policy.policy.version
        await locks.start()
        tasks = [
            asyncio.create_task(recorder.run(), name="recorder"),
            asyncio.create_task(uploader.run(), name="uploader"),
            asyncio.create_task(watch.run(), name="session-watch"),
            asyncio.create_task(_report(folder, lambda: _state(collector, recorder, uploader, watch)), name="status"),
        ]
        await _until_stopped(tasks)
    finally:
        recorder.stop()
        await locks.close()
        await channel.close()
        await gateway.aclose()
        collector.close()
        outbox.close()


def _state(collector: GuardedCollector, recorder: Recorder, uploader: Uploader, watch: SessionWatch) -> dict[str, Any]:
    link = uploader.link
    return {
        "backend": collector.name,
        "collector_restarts": collector.restarts,
        "connection": link.state,
        "last_error": link.last_error,
        "last_ack_at": link.last_ack_at,
        "policy_version": link.policy_version,
        "session_id": watch.current(),
        "app": recorder.app,
        "activity": recorder.activity,
        "recording": recorder.recording,
    }


async def _report(folder: Path, state: Callable[[], dict[str, Any]]) -> None:
    while True:
        status.write(folder, state())
        await asyncio.sleep(2.0)


async def _until_stopped(tasks: list[asyncio.Task[None]]) -> None:
    """Waits for SIGTERM/SIGINT or the first task to end; re-raises what ended it."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait(), name="signals")
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in [*tasks, stopper]:
            task.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
    for task in done:
        if task is not stopper and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
