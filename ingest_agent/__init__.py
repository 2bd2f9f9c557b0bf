"""Agent ingest: `POST /api/workspaces/{workspace_id}/logs`, the Data Collector API's headers and body
authenticated by the agent's registered certificate (forwarded client certificate or assertion)."""

import azure.functions as func

from shared.errors import SluiceError
from shared.http import error_response, ingest_request, unexpected_error_response
from shared.runtime import services


def main(req: func.HttpRequest) -> func.HttpResponse:
    try:
        services().agent_ingest.ingest(ingest_request(req), workspace_id=req.route_params["workspace_id"])
    except SluiceError as error:
        return error_response(error)
    except Exception as error:
        return unexpected_error_response(error)
    return func.HttpResponse(status_code=200)
