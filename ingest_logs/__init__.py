"""Logs Ingestion API endpoint: `POST /dataCollectionRules/{immutable_id}/streams/{stream}?api-version=
2023-01-01`, 204 once stored. Authentication is the API's own bearer token (Entra ID's in Azure), so
the function itself is anonymous to the Functions host."""

import azure.functions as func

from shared.errors import SluiceError
from shared.http import ingest_request, logs_ingestion_error_response, unexpected_error_response
from shared.runtime import services


def main(req: func.HttpRequest) -> func.HttpResponse:
    try:
        services().logs_ingestion.ingest(
            ingest_request(req),
            immutable_id=req.route_params["immutable_id"],
            stream=req.route_params["stream"],
        )
    except SluiceError as error:
        return logs_ingestion_error_response(error)
    except Exception as error:
        return unexpected_error_response(error, logs_ingestion_error_response)
    return func.HttpResponse(status_code=204)
