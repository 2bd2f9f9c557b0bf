"""Agent enrollment: `POST /api/agents/register` with `{"workspace_id", "enrollment_key",
"certificate"}` (PEM, public part) → 201 `{"agent_id", "workspace_id", "thumbprint", "not_after"}`."""

import azure.functions as func

from shared.errors import SluiceError
from shared.http import error_response, json_response, unexpected_error_response
from shared.runtime import services


def main(req: func.HttpRequest) -> func.HttpResponse:
    # Imported on the first call: X.509 parsing (cryptography) would add ~60 ms to every cold start.
    from shared.agents import EnrollmentRequest

    try:
        agent = services().enrollment.register(EnrollmentRequest.parse(req.get_body()))
    except SluiceError as error:
        return error_response(error)
    except Exception as error:
        return unexpected_error_response(error)
    return json_response(
        {
            "agent_id": agent.agent_id,
            "workspace_id": agent.workspace_id,
            "thumbprint": agent.thumbprint,
            "not_after": agent.not_after.isoformat(),
        },
        status_code=201,
    )
