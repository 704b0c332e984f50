"""The Starlette gateway: REST and websockets for browsers, translated to gRPC calls.

It holds no business rules: it validates shapes, forwards the caller's token and maps
gRPC status codes to the original's HTTP contract (API.md).
"""
