"""The dashboard's static files under URLs that carry a hash of their content.

The hashes are computed once, when the routes are built (start-up), so a release that
changes a file changes its URL: browsers may then keep every file forever
(``immutable``), and never run a stale script against new pages.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

STATIC_DIR = Path(__file__).parent / "static"
PREFIX = "/static"
CACHE_FOREVER = "public, max-age=31536000, immutable"
SERVED_SUFFIXES = {".js", ".css", ".svg", ".png", ".ico", ".txt"}
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    path: str  # relative to STATIC_DIR, with forward slashes
    digest: str
    body: bytes

    @property
    def url(self) -> str:
        return f"{PREFIX}/{self.digest}/{self.path}"

    @property
    def media_type(self) -> str:
        suffix = Path(self.path).suffix
        return TYPES.get(suffix) or mimetypes.guess_type(self.path)[0] or "application/octet-stream"


class Assets:
    """Every servable file of ``root``, read and hashed once."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self._by_path: dict[str, Asset] = {}
        for file in sorted(root.rglob("*")):
            if file.is_file() and file.suffix in SERVED_SUFFIXES:
                body = file.read_bytes()
                relative = file.relative_to(root).as_posix()
                self._by_path[relative] = Asset(relative, hashlib.sha256(body).hexdigest()[:16], body)

    def url(self, path: str) -> str:
        """The hashed URL of ``path``; a KeyError names a template's typo at first render."""
        return self._by_path[path].url

    def find(self, digest: str, path: str) -> Asset | None:
        found = self._by_path.get(path)
        return found if found is not None and found.digest == digest else None

    def routes(self) -> list[BaseRoute]:
        async def serve(request: Request) -> Response:
            found = self.find(request.path_params["digest"], request.path_params["path"])
            if found is None:
                # An old or made-up hash: never cache the miss under a name meant forever.
                return Response("not found", status_code=404, headers={"Cache-Control": "no-store"})
            headers = {"Cache-Control": CACHE_FOREVER, "X-Content-Type-Options": "nosniff"}
            return Response(found.body, media_type=found.media_type, headers=headers)

        return [Route(PREFIX + "/{digest}/{path:path}", serve, methods=["GET"])]
