"""`GET /api/openapi.json`: the OpenAPI 3.1 document of the whole HTTP surface, as kept in the repository
(shared/openapi.json), read once per instance."""

from functools import cache
from importlib import resources

import azure.functions as func


@cache
def _document() -> bytes:
    return resources.files("shared").joinpath("openapi.json").read_bytes()


def main(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(_document(), status_code=200, mimetype="application/json")
