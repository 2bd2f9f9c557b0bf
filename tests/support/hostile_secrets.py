"""Looking for secrets in log lines: each secret under a name, searched as sent and in the encodings a
careless log call would print it in (base64, URL-safe base64 with or without padding, percent
encoding), and a JWT also by its signature alone."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote

from shared.telemetry import JsonFormatter

MIN_SECRET_CHARS = 16  # shorter strings would match by chance; every secret here is longer


def encoded_forms(secret: str) -> set[str]:
    urlsafe = secret.replace("+", "-").replace("/", "_")
    forms = {
        secret,
        urlsafe,
        urlsafe.rstrip("="),
        secret.rstrip("="),
        quote(secret, safe=""),
        base64.b64encode(secret.encode("utf-8")).decode("ascii"),
        base64.urlsafe_b64encode(secret.encode("utf-8")).decode("ascii").rstrip("="),
    }
    if secret.count(".") == 2:  # a JWT: its signature is enough to replay it
        forms.add(secret.rsplit(".", 1)[1])
    return {form for form in forms if len(form) >= MIN_SECRET_CHARS}


def pem_lines(pem: str) -> set[str]:
    """The base64 lines of a PEM private key: any one of them printed is a leak."""
    return {line for line in pem.splitlines() if line and not line.startswith("-----")}


@dataclass
class Secrets:
    """Every secret the scenario handled, by what it is."""

    named: dict[str, set[str]] = field(default_factory=dict)

    def add(self, name: str, secret: str) -> None:
        self.named.setdefault(name, set()).update(encoded_forms(secret))

    def add_private_key(self, name: str, pem: str) -> None:
        self.named.setdefault(name, set()).update(
            form for form in pem_lines(pem) if len(form) >= MIN_SECRET_CHARS
        )

    def found_in(self, lines: Iterable[str]) -> list[tuple[str, str]]:
        """(secret name, the line) for every line that holds any form of a secret."""
        return [
            (name, line[:300])
            for line in lines
            for name, forms in self.named.items()
            if any(form in line for form in forms)
        ]

    @property
    def count(self) -> int:
        return len(self.named)


class CapturedLines(logging.Handler):
    """Every record as the service's JSON lines hold it: arguments, `extra` fields and traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.extend(self.format(record).splitlines() or [""])


@contextmanager
def captured_at_debug() -> Iterator[CapturedLines]:
    """Every logger at DEBUG into one capture, the levels as they were afterwards."""
    capture = CapturedLines()
    root = logging.getLogger()
    loggers = [root, *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    levels = [(logger, logger.level) for logger in loggers]
    root.addHandler(capture)
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for logger, level in levels:
            logger.setLevel(level)
