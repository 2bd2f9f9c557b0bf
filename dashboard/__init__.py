"""The dashboard: `GET /dashboard/{path}` serves the static page in `static/` (HTML, JS, CSS; no build
step). The page signs in with a workspace's reader key and reads the query API from the browser; this
function holds no data and no credentials, so it is anonymous."""

from pathlib import Path

import azure.functions as func

STATIC_DIR = Path(__file__).parent / "static"
MIMETYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}  # sent with charset=utf-8
# Looked up by exact name, never joined into a path: `..`, encoded slashes or absolute paths in the
# route cannot reach anything but these files.
STATIC_FILES = {path.name: path for path in STATIC_DIR.iterdir() if path.suffix in MIMETYPES}
INDEX = "index.html"
# The page loads only its own files and talks only to this origin: injected markup can neither run
# inline script nor send a reader key elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def main(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("path") or INDEX
    path = STATIC_FILES.get(name)
    if path is None:
        return func.HttpResponse(
            "Not found.", status_code=404, headers=SECURITY_HEADERS, mimetype="text/plain"
        )
    return func.HttpResponse(path.read_bytes(), headers=SECURITY_HEADERS, mimetype=MIMETYPES[path.suffix])
