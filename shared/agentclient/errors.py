"""What the agent reports to the person running it. The agent is a client, so these are not part of
the service's error tree (shared.errors): nothing maps them to HTTP.

    AgentError
    ├── AgentConfigError    the state dir or a flag is unusable (not enrolled, a bad endpoint, ...)
    ├── EnrollmentFailed    the service refused the enrollment, or could not be reached
    └── InvalidRecords      `send --format json` input that is not an object or an array of objects

Delivery problems are not errors: a batch the service cannot take now stays in the spool, and one it
refuses for good is moved aside with a log line (see shared.agentclient.sender)."""

from __future__ import annotations


class AgentError(Exception):
    pass


class AgentConfigError(AgentError):
    pass


class EnrollmentFailed(AgentError):
    pass


class InvalidRecords(AgentError):
    pass
