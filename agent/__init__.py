"""The WorkPulse desktop agent: what employees run to record their work time.

It samples the active window and idle time through a platform collector
(``agent.collectors``), merges samples into activity events, keeps every event in a
durable outbox on disk (``agent.outbox``) until ingest acknowledges it, and streams
them over gRPC (``agent.uploader``). It talks to the mesh only through the generated
stubs (ingest) and the gateway's REST API (log-in, sessions); it imports no service.
"""
