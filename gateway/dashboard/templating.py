"""Jinja2 rendering of pages and fragments: autoescaped, each response with its own
script nonce and the dashboard's security headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from gateway.dashboard import formats
from gateway.dashboard.assets import Assets
from gateway.dashboard.security import new_nonce, protect

TEMPLATES_DIR = Path(__file__).parent / "templates"


class Renderer:
    def __init__(self, assets: Assets, templates: Path = TEMPLATES_DIR) -> None:
        self.assets = assets
        self.env = Environment(
            loader=FileSystemLoader(templates),
            # Every template is HTML, so everything is escaped unless marked safe (nothing is).
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals["asset"] = assets.url
        self.env.filters.update(formats.FILTERS)

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        nonce = new_nonce()
        html = self.env.get_template(template).render(request=request, nonce=nonce, **context)
        return protect(HTMLResponse(html, status_code=status), nonce)
