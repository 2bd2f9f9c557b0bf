"""Structured logs: every line that concerns a workspace carries its id (`workspace_id`), locally as
a JSON field and in Application Insights as a custom dimension. OpenTelemetry export is switched on
only when APPLICATIONINSIGHTS_CONNECTION_STRING is set."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

LOGGER_NAME = "sluice"
_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def workspace_log(logger: logging.Logger, workspace_id: str) -> logging.LoggerAdapter[logging.Logger]:
    return logging.LoggerAdapter(logger, {"workspace_id": workspace_id})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every `extra` field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def install_json_logging(level: str) -> None:
    """For processes we own (local host, CLI); in Azure the Functions worker owns the handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def configure_telemetry(
    *, level: str, appinsights_connection_string: str | None, credential: TokenCredential | None = None
) -> None:
    """`credential`: the app's identity, which Application Insights requires once its local
    (connection-string) authentication is off, as infra/ provisions it; None sends with the key alone."""
    logging.getLogger(LOGGER_NAME).setLevel(level)
    if appinsights_connection_string:
        # Imported here: it costs hundreds of milliseconds and only Azure deployments need it.
        from azure.monitor.opentelemetry import configure_azure_monitor

        configure_azure_monitor(
            connection_string=appinsights_connection_string, credential=credential, logger_name=LOGGER_NAME
        )
