"""The TTL cache: values expire after the TTL, and are reloaded ahead of expiry in the background."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Store:
    def __init__(self) -> None:
        self.value = "v1"
        self.loads = 0
        self.fail = False

    def load(self, key: str) -> str:
        self.loads += 1
        if self.fail:
            raise RuntimeError("store down")
        return f"{key}:{self.value}"


def cache(clock: Clock, jobs: list[Callable[[], None]]) -> TtlCache[str, str]:
    return TtlCache(ttl_seconds=30, monotonic=clock, run_refresh=jobs.append)


def test_given_a_fresh_value_when_read_early_then_served_without_loading() -> None:
    clock, store, jobs = Clock(), Store(), []
    values = cache(clock, jobs)
    values.get_or_load("k", store.load)

    clock.now += 10
    assert values.get_or_load("k", store.load) == "k:v1"
    assert (store.loads, jobs) == (1, [])


def test_given_the_last_fifth_of_the_ttl_when_read_then_cached_value_served_and_reloaded_behind() -> None:
    clock, store, jobs = Clock(), Store(), []
    values = cache(clock, jobs)
    values.get_or_load("k", store.load)
    store.value = "v2"  # e.g. a rotated key

    clock.now += 25
    assert values.get_or_load("k", store.load) == "k:v1"  # the request does not wait
    assert values.get_or_load("k", store.load) == "k:v1"
    assert len(jobs) == 1, "one refresh per key at a time"
    jobs.pop()()

    assert values.get_or_load("k", store.load) == "k:v2"
    assert store.loads == 2


def test_given_an_expired_value_when_read_then_loaded_on_the_request() -> None:
    clock, store, jobs = Clock(), Store(), []
    values = cache(clock, jobs)
    values.get_or_load("k", store.load)
    store.value = "v2"

    clock.now += 31
    assert values.get_or_load("k", store.load) == "k:v2"
    assert jobs == []


def test_given_a_failing_refresh_then_the_value_serves_until_expiry_and_then_the_error_shows() -> None:
    clock, store, jobs = Clock(), Store(), []
    values = cache(clock, jobs)
    values.get_or_load("k", store.load)
    store.fail = True

    clock.now += 25
    values.get_or_load("k", store.load)
    jobs.pop()()  # logs, keeps the value
    assert values.get_or_load("k", store.load) == "k:v1"

    clock.now += 10
    with pytest.raises(RuntimeError, match="store down"):
        values.get_or_load("k", store.load)
