"""Composition helpers shared by every service's entry point (no domain rules here)."""

from __future__ import annotations

from pathlib import Path

from workpulse import log, telemetry
from workpulse.identity import ServiceIdentity, TokenVerifier, load_private_key, load_public_key
from workpulse.settings import CommonSettings


def start_process(service: str, settings: CommonSettings) -> None:
    log.configure(service, settings.log_level)
    telemetry.configure(service, settings.otel_exporter_otlp_endpoint)


def token_verifier(settings: CommonSettings) -> TokenVerifier:
    access = [load_public_key(Path(p.strip())) for p in settings.access_token_public_keys.split(",") if p.strip()]
    service = load_public_key(settings.service_public_key_file) if settings.service_public_key_file else None
    return TokenVerifier(access, service, issuer=settings.token_issuer, audience=settings.token_audience)


def service_identity(name: str, settings: CommonSettings) -> ServiceIdentity | None:
    if settings.service_private_key_file is None:
        return None
    return ServiceIdentity(name, load_private_key(settings.service_private_key_file), settings.token_audience)
