"""A small in-process cache with a time-to-live, so a request does not wait on a registry or a
secret store each time, and a rotated key or disabled workspace is honoured within the TTL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

DEFAULT_TTL_SECONDS = 30.0


class TtlCache(Generic[K, V]):
    def __init__(
        self, *, ttl_seconds: float = DEFAULT_TTL_SECONDS, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get_or_load(self, key: K, load: Callable[[K], V]) -> V:
        now = self._monotonic()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = load(key)  # errors propagate and are not cached
        with self._lock:
            self._entries[key] = (now + self._ttl, value)
        return value
