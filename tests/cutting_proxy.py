"""A TCP relay in front of a real server that cuts connections on purpose: after a number
of bytes in one direction, it closes both ends, as a dropped network link would. The
endpoint fault tests put it between the client and the real sshd or S3 server."""

from __future__ import annotations

import socket
import struct
import threading
from typing import Literal


class CuttingProxy:
    """Listens on 127.0.0.1 (`port`) and relays each connection to `target_port`. While
    `cuts_left` is above zero, a connection that has carried `cut_after` bytes in
    `direction` (`down`: server to client, `up`: client to server) is closed there, and
    `cuts_left` goes down by one; `cuts_left=-1` cuts every such connection."""

    def __init__(self, target_port: int, *, cut_after: int, direction: Literal["down", "up"] = "down", cuts: int = 1):
        self.target_port, self.cut_after, self.direction = target_port, cut_after, direction
        self.cuts_left = cuts
        self.cut = 0  # connections cut so far
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self.connections += 1
                cutting = self.cuts_left != 0
                self._open += [client, server]
            ends = {"up": (client, server), "down": (server, client)}
            for direction, (source, sink) in ends.items():
                limit = self.cut_after if cutting and direction == self.direction else None
                threading.Thread(target=self._relay, args=(source, sink, limit, (client, server)), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket, limit: int | None, both: tuple[socket.socket, socket.socket]) -> None:
        carried = 0
        try:
            while block := source.recv(65536):
                if limit is not None and carried + len(block) >= limit:
                    sink.sendall(block[: max(limit - carried, 0)])
                    with self._lock:
                        if self.cuts_left != 0:
                            self.cuts_left -= 1 if self.cuts_left > 0 else 0
                            self.cut += 1
                    for end in both:  # the link is gone, both ways (shutdown wakes the other relay)
                        end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        try:
                            end.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        end.close()
                    return
                sink.sendall(block)
                carried += len(block)
        except OSError:
            pass
        for end in both:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def allow(self) -> None:
        """No more cuts: new connections pass whole."""
        with self._lock:
            self.cuts_left = 0

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for end in self._open:
                try:
                    end.close()
                except OSError:
                    pass
