"""Composition helpers shared by every service's entry point (no domain rules here)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any

import uvloop

from workpulse import faults, log, telemetry
from workpulse.identity import ServiceIdentity, TokenVerifier, load_private_key, load_public_key
from workpulse.settings import CommonSettings


def start_process(service: str, settings: CommonSettings) -> None:
    faults.arm_from_environment()  # test-only crash points (workpulse.faults); unset in production
    log.configure(service, settings.log_level)
    telemetry.configure(service, settings.otel_exporter_otlp_endpoint, sql_spans=settings.otel_sql_spans)


def run(main: Coroutine[Any, Any, None]) -> None:
    """Runs a process's main coroutine on uvloop (libuv): the C loop costs a fraction of
    asyncio's pure-Python one per callback, and a hot-path call takes dozens of them."""
    uvloop.run(main)


def token_verifier(settings: CommonSettings) -> TokenVerifier:
    access = [load_public_key(Path(p.strip())) for p in settings.access_token_public_keys.split(",") if p.strip()]
    service = load_public_key(settings.service_public_key_file) if settings.service_public_key_file else None
    return TokenVerifier(access, service, issuer=settings.token_issuer, audience=settings.token_audience)


def service_identity(name: str, settings: CommonSettings) -> ServiceIdentity | None:
    if settings.service_private_key_file is None:
        return None
    return ServiceIdentity(name, load_private_key(settings.service_private_key_file), settings.token_audience)


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancels a process's background tasks (relays, sweeps) and waits for each to end."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task, outcome in zip(pending, await asyncio.gather(*pending, return_exceptions=True), strict=True):
        if isinstance(outcome, Exception):
            logging.getLogger("workpulse.runtime").warning(
                "background task failed", exc_info=outcome, extra={"fields": {"task": task.get_name()}}
            )
