"""Run actions in threads released at the same moment, to provoke races on real services."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
THREAD_TIMEOUT_SECONDS = 60.0


def run_together(count: int, action: Callable[[int], T]) -> list[T]:
    """Runs `action(i)` in `count` threads released at the same moment by a barrier."""
    barrier = threading.Barrier(count, timeout=THREAD_TIMEOUT_SECONDS)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            results[index] = action(index)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(THREAD_TIMEOUT_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a worker thread did not finish"
    if errors:
        raise errors[0]
    return results
