"""Names that end up in storage paths: validated before they touch a container or blob name."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

from shared.errors import InvalidCustomerId, InvalidLogType

CONTAINER_PREFIX = "ws-"
RAW_PREFIX = "raw/"
LOG_TYPE_MAX_LENGTH = 100

# Azure: "Log-Type ... can contain only letters, numbers, and underscore, and may not exceed 100
# characters". ASCII only: Unicode letters would allow confusable names.
_LOG_TYPE = re.compile(r"[A-Za-z0-9_]{1,100}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RAW_BLOB = re.compile(
    r"raw/(?P<y>[0-9]{4})/(?P<m>[0-9]{2})/(?P<d>[0-9]{2})/(?P<h>[0-9]{2})/(?P<log_type>[A-Za-z0-9_]{1,100})/"
    r"(?P<id>[0-9a-f]{32})\.json\.gz"
)


def parse_workspace_id(value: str) -> str:
    """The canonical (lower-case) form of a workspace GUID, or InvalidCustomerId."""
    if not _GUID.fullmatch(value):
        raise InvalidCustomerId("The workspace id must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).")
    return value.lower()


def new_workspace_id() -> str:
    return str(uuid.uuid4())


def parse_log_type(value: str) -> str:
    if not _LOG_TYPE.fullmatch(value):
        raise InvalidLogType(
            "Log-Type may contain only ASCII letters, digits and underscore, 1 to 100 characters."
        )
    return value


def container_name(workspace_id: str) -> str:
    return CONTAINER_PREFIX + workspace_id


def workspace_of_container(name: str) -> str | None:
    """The workspace a container belongs to, or None for containers that are not a workspace's."""
    if not name.startswith(CONTAINER_PREFIX):
        return None
    candidate = name[len(CONTAINER_PREFIX) :]
    return candidate if _GUID.fullmatch(candidate) and candidate == candidate.lower() else None


@dataclass(frozen=True, slots=True)
class RawBlobName:
    """`raw/{yyyy}/{MM}/{dd}/{HH}/{LogType}/{id}.json.gz`: date first so retention deletes by day prefix."""

    hour: datetime
    log_type: str
    blob_id: str

    @classmethod
    def new(cls, received_at: datetime, log_type: str) -> RawBlobName:
        hour = received_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return cls(hour=hour, log_type=log_type, blob_id=uuid.uuid4().hex)

    @classmethod
    def parse(cls, name: str) -> RawBlobName | None:
        match = _RAW_BLOB.fullmatch(name)
        if match is None:
            return None
        try:
            hour = datetime(int(match["y"]), int(match["m"]), int(match["d"]), int(match["h"]), tzinfo=UTC)
        except ValueError:
            return None
        return cls(hour=hour, log_type=match["log_type"], blob_id=match["id"])

    def __str__(self) -> str:
        return f"{day_prefix(self.hour.date())}{self.hour:%H}/{self.log_type}/{self.blob_id}.json.gz"


def day_prefix(day: date) -> str:
    return f"{RAW_PREFIX}{day:%Y/%m/%d}/"
