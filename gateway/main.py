"""Gateway entry point: uvicorn serving the app, graceful on SIGTERM."""

from __future__ import annotations

import logging

import uvicorn

from gateway import realtime
from gateway.app import create_app
from gateway.settings import GatewaySettings
from workpulse import runtime
from workpulse.settings import load


def main() -> None:
    settings = load(GatewaySettings)
    runtime.start_process("gateway", settings)
    app = create_app(settings)
    if settings.gateway_access_log:
        # workpulse.log silences uvicorn.access by default; its lines go through the same
        # JSON formatter, which masks credentials in URLs (workpulse.log.redact).
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    trusted = settings.trusted_proxies()
    realtime.tune_gc()  # realtime (issue 4): GC pauses would stall every live connection
    uvicorn.run(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        access_log=settings.gateway_access_log,
        # uvicorn's defaults trust X-Forwarded-For from 127.0.0.1 (and read its own
        # FORWARDED_ALLOW_IPS): only the configured proxies may name the client here.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or [],
        timeout_graceful_shutdown=10,
        ws_ping_interval=20,
    )
