"""WorkPulse shared kernel: what every process needs and nothing domain-specific.

Settings, logging, telemetry, the gRPC server bootstrap, database and Redis factories,
tenancy, token verification and the outbox relay. The sub-packages ``workpulse.<svc>.v1``
hold the stubs generated from ``protos/`` (``make protos``); never edit them by hand.
"""
