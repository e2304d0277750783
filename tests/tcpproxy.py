"""A loopback TCP proxy that forwards, and on command stops forwarding while it keeps every
connection open: a pgbouncer, HAProxy or cloud SQL proxy whose backend went away. The client's
TCP stays up (its kernel ACKs what it sends), so no keepalive or ``tcp_user_timeout`` fires;
only a deadline of the client's own ends its wait."""

from __future__ import annotations

import select
import socket
import threading
from types import TracebackType


class FreezingProxy:
    """``with FreezingProxy(5432) as proxy:`` connect to ``proxy.port``; ``proxy.freeze()``,
    ``proxy.thaw()``. Connections accepted while frozen are held, and reach the server once thawed."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._trigger: bytes | None = None
        self._passes = 0  # sends of the trigger still forwarded before it freezes

    def freeze(self) -> None:
        """Stop forwarding, both ways, on every connection; keep them all open."""
        self._forwarding.clear()

    def thaw(self) -> None:
        self._forwarding.set()

    def freeze_on(self, pattern: bytes, after: int = 0) -> None:
        """Freeze as a client sends ``pattern`` (a table's name in a query), before forwarding it:
        connected, the client's next statement goes unanswered. ``after``: that many sends of it
        are forwarded first (the second chunk's lookup, mid-read)."""
        self._trigger, self._passes = pattern, after

    def __enter__(self) -> "FreezingProxy":
        self._start(self._accept)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._closing.set()
        self._forwarding.set()
        self._listener.close()
        for thread in list(self._threads):
            thread.join(timeout=5)
        with self._lock:
            for held in self._sockets:
                held.close()

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _keep(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._closing.is_set():
            try:
                client = self._keep(self._listener.accept()[0])
            except OSError:
                continue
            self._start(self._pump, client)

    def _pump(self, client: socket.socket) -> None:
        """Forward between ``client`` and a new connection to the server, while not frozen."""
        while not self._forwarding.is_set():  # a backend that is gone: the connection is held
            if self._closing.wait(0.05):
                return
        try:
            server = self._keep(socket.create_connection(self._upstream, timeout=5))
        except OSError:
            client.close()
            return
        pair = {client: server, server: client}
        while not self._closing.is_set():
            if not self._forwarding.is_set():
                self._closing.wait(0.05)
                continue
            readable, _, _ = select.select(list(pair), [], [], 0.05)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                    if data and sock is client and self._trigger is not None and self._trigger in data:
                        with self._lock:
                            frozen, self._passes = self._passes <= 0, self._passes - 1
                            if frozen:
                                self._trigger = None
                        if frozen:
                            self.freeze()
                            break  # not forwarded: it waits with the rest
                    if data:
                        pair[sock].sendall(data)
                        continue
                except OSError:
                    pass
                client.close()
                server.close()
                return


class SilentServer:
    """``with SilentServer() as port:`` a loopback port that accepts every connection and never
    says a word: a relay, web server or database (or a proxy before one) that takes the TCP
    connection and then hangs. The connections are held open until the ``with`` ends."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> int:
        self._thread.start()
        port: int = self._listener.getsockname()[1]
        return port

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self._held:
            connection.close()
        self._listener.close()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                self._held.append(self._listener.accept()[0])
            except OSError:
                continue
