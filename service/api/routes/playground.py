"""``GET /``: the playground page (static files inside the package).

The page is plain HTML, CSS and JavaScript modules in ``service/static/playground/`` with no build
step and nothing fetched from outside the server: it calls the public API (``/v1/schemes``,
``/v1/devices``, ``POST /v1/tensor`` in JSON mode and ``GET /v1/tensor`` for the values the
68-95-99.7 table counts, ``/v1/layers``, ``POST /v1/module``, ``GET /v1/models``, ``POST /v1/model``)
like any other client. Only the files listed in ``ASSETS`` are served, so no path reaches outside the
folder.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

router = APIRouter(tags=["playground"])

# File name -> media type. Every file the page loads is here; anything else is a 404.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "form.js": "text/javascript; charset=utf-8",
    "plot.js": "text/javascript; charset=utf-8",
    "density.js": "text/javascript; charset=utf-8",
    "snippets.js": "text/javascript; charset=utf-8",
    "tensor-view.js": "text/javascript; charset=utf-8",
    "module-view.js": "text/javascript; charset=utf-8",
    "model-view.js": "text/javascript; charset=utf-8",
    "rule.js": "text/javascript; charset=utf-8",
    "url.js": "text/javascript; charset=utf-8",
    "format.js": "text/javascript; charset=utf-8",
}
# Revalidate on every load (the ETag makes that a 304), so a new release is picked up at once.
CACHING = {"Cache-Control": "no-cache"}


def _asset_path(name: str) -> Path:
    return Path(str(files("service").joinpath("static", "playground", name)))


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def playground_page() -> FileResponse:
    """The playground: pick a scheme and its parameters, see the tensor's histogram and stats."""
    return FileResponse(_asset_path("index.html"), media_type=ASSETS["index.html"], headers=CACHING)


@router.api_route("/playground/{name}", methods=["GET", "HEAD"], include_in_schema=False)
async def playground_asset(name: str) -> FileResponse:
    """One of the page's own scripts or its style sheet."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no playground file {name!r}; files: {', '.join(sorted(ASSETS))}")
    return FileResponse(_asset_path(name), media_type=media_type, headers=CACHING)
