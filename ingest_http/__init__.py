"""HTTP Data Collector API endpoint: `POST /api/logs?api-version=2016-04-01`. Authentication is the
API's own SharedKey signature, so the function itself is anonymous to the Functions host."""

import azure.functions as func

from shared.errors import SluiceError
from shared.http import error_response, ingest_request, unexpected_error_response
from shared.runtime import services


def main(req: func.HttpRequest) -> func.HttpResponse:
    try:
        services().data_collector.ingest(ingest_request(req))
    except SluiceError as error:
        return error_response(error)
    except Exception as error:
        return unexpected_error_response(error)
    return func.HttpResponse(status_code=200)
