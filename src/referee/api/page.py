"""The transfers page (``/ui``): static files shipped in the package, served as they are.

The page holds no data: its script asks the API for it with the token the operator typed, kept in the
browser's session storage. So the page itself is served without a token, like ``/openapi.json``.
Its Content-Security-Policy lets only the page's own script and style run (no inline script, no event
handler attribute): a Refer-To that slipped through as markup still could not run.
"""

from __future__ import annotations

from importlib import resources

from referee.api.http import HttpError, Response

INDEX = "index.html"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
# The ladder opened on its own: an SVG document may carry script, this one must not run any.
PICTURE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'"


def _load() -> dict[str, bytes]:
    folder = resources.files("referee.api") / "static"
    return {item.name: item.read_bytes() for item in folder.iterdir() if item.name.endswith(tuple(TYPES))}


FILES = _load()
ASSETS = sorted(name for name in FILES if name != INDEX)


def _type(name: str) -> str:
    return TYPES["." + name.rpartition(".")[2]] + "; charset=utf-8"


def page() -> Response:
    return _serve(INDEX)


def asset(name: str) -> Response:
    if name not in ASSETS:
        raise HttpError(404, f"no such file {name[:80]!r} in the page (see /openapi.json)")
    return _serve(name)


def _serve(name: str) -> Response:
    return Response(
        200,
        FILES[name],
        {
            "Content-Type": _type(name),
            "Content-Security-Policy": PAGE_POLICY,
            "Referrer-Policy": "no-referrer",
        },
    )


def picture(svg: str) -> Response:
    return Response(
        200,
        svg.encode(),
        {"Content-Type": "image/svg+xml; charset=utf-8", "Content-Security-Policy": PICTURE_POLICY},
    )
