"""Gateway entry point: uvicorn serving the app, graceful on SIGTERM."""

from __future__ import annotations

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
    realtime.tune_gc()  # realtime (issue 4): GC pauses would stall every live connection
    uvicorn.run(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        timeout_graceful_shutdown=10,
        ws_ping_interval=20,
    )
