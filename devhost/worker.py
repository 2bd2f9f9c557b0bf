"""A loop on its own daemon thread that stops promptly when asked (event poller, timer scheduler)."""

from __future__ import annotations

import threading


class BackgroundWorker:
    def __init__(self, *, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        raise NotImplementedError
