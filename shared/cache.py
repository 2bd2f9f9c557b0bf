"""A small in-process cache with a time-to-live, so a request does not wait on a registry or a
secret store, and a rotated key or disabled workspace is honoured within the TTL.

Refresh-ahead: a value read during the last fifth of its life is reloaded in the background while the
cached one is served, so under steady traffic no request waits on the store; only a key unused for a
whole TTL (or never loaded) is loaded on the request's time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

DEFAULT_TTL_SECONDS = 30.0
REFRESH_AHEAD_FRACTION = 0.8

log = logging.getLogger("sluice.cache")


def _in_background(job: Callable[[], None]) -> None:
    threading.Thread(target=job, name="sluice-cache-refresh", daemon=True).start()


class TtlCache(Generic[K, V]):
    def __init__(
        self,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        run_refresh: Callable[[Callable[[], None]], None] = _in_background,
    ) -> None:
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._run_refresh = run_refresh
        self._entries: dict[K, tuple[float, V]] = {}  # key -> (loaded at, value)
        self._refreshing: set[K] = set()
        self._lock = threading.Lock()

    def get_or_load(self, key: K, load: Callable[[K], V]) -> V:
        now = self._monotonic()
        with self._lock:
            entry = self._entries.get(key)
            fresh = entry is not None and now < entry[0] + self._ttl
            refresh = (
                fresh
                and entry is not None
                and now >= entry[0] + REFRESH_AHEAD_FRACTION * self._ttl
                and key not in self._refreshing
            )
            if refresh:
                self._refreshing.add(key)
        if refresh:
            self._run_refresh(lambda: self._refresh(key, load))
        if fresh and entry is not None:
            return entry[1]
        value = load(key)  # errors propagate and are not cached
        with self._lock:
            self._entries[key] = (now, value)
        return value

    def _refresh(self, key: K, load: Callable[[K], V]) -> None:
        try:
            value = load(key)
        except Exception:
            # The cached value serves until it expires; then a request loads it and sees the error.
            log.warning("background refresh failed; the cached value stays until it expires", exc_info=True)
        else:
            with self._lock:
                self._entries[key] = (self._monotonic(), value)
        finally:
            with self._lock:
                self._refreshing.discard(key)
