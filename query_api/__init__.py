"""Query API: `GET /api/workspaces/{workspace_id}/{usage|perf|events|syslog|summary}`, JSON, for a
reader of the workspace (reader key or Entra token with the reader role and a grant; shared.readers).
Anonymous to the Functions host: the API authenticates itself. ingest_agent's literal `.../logs` route
(POST) takes precedence over this template, and `logs` is no resource here (404 for a GET)."""

import azure.functions as func

from shared.errors import SluiceError
from shared.http import error_response, json_response, unexpected_error_response
from shared.runtime import services


def main(req: func.HttpRequest) -> func.HttpResponse:
    try:
        current = services()
        workspace_id = req.route_params["workspace_id"]
        document = current.queries.answer(
            req.route_params["resource"],
            req.params,
            authenticate=lambda: current.readers.authenticate(req.headers.get("Authorization"), workspace_id),
        )
    except SluiceError as error:
        return error_response(error)
    except Exception as error:
        return unexpected_error_response(error)
    return json_response(document)
