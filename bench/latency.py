"""A TCP proxy on loopback that holds every chunk for a fixed delay in each direction before passing it
on, in order: a database across a network, as far as round trips go (not its bandwidth), so the
upsert comparison can be measured at a realistic round trip instead of estimated from loopback."""

from __future__ import annotations

import queue
import socket
import threading
import time
from contextlib import suppress
from types import TracebackType

_CHUNK_BYTES = 64 * 1024


class DelayingProxy:
    """`with DelayingProxy(upstream_port, one_way_delay=0.0005) as proxy:` connect to `proxy.port`."""

    def __init__(self, upstream_port: int, *, one_way_delay: float, host: str = "127.0.0.1") -> None:
        self._upstream = (host, upstream_port)
        self._delay = one_way_delay
        self._listener = socket.create_server((host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def __enter__(self) -> DelayingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        with suppress(OSError):  # wakes the accepting thread, which close() alone does not on Linux
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for connection in self._sockets:
                connection.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed: the proxy is done
                return
            try:
                upstream = socket.create_connection(self._upstream)
            except OSError:  # the server is gone: this client gets a closed connection, the next a try
                client.close()
                continue
            for connection in (client, upstream):
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, upstream]
            self._forward(client, upstream)
            self._forward(upstream, client)

    def _forward(self, source: socket.socket, target: socket.socket) -> None:
        """One direction: a reader stamps each chunk with when it may go, a sender waits for that."""
        due: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

        def read() -> None:
            try:
                while chunk := source.recv(_CHUNK_BYTES):
                    due.put((time.monotonic() + self._delay, chunk))
            except OSError:
                pass
            due.put((0.0, b""))  # end of stream

        def send() -> None:
            try:
                while True:
                    at, chunk = due.get()
                    if not chunk:
                        target.shutdown(socket.SHUT_WR)
                        return
                    wait = at - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    target.sendall(chunk)
            except OSError:
                pass

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=send, daemon=True).start()
