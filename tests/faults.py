"""A loopback TCP proxy that cuts connections on purpose, for fault tests.

Sits between inbox-guard and Dovecot. It can cut a connection after a number of
bytes (counted both ways), or when the client sends a chosen command, either before
forwarding it (the server never sees it) or after (the server does it, the client
never hears back: the case that tests exactly-once). It can also stall a reply.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass


@dataclass
class Cut:
    after_bytes: int | None = None  # total bytes relayed (both ways) before cutting
    at_command: bytes | None = None  # e.g. b"UID STORE", b"APPEND", b"UID FETCH"
    forward_first: bool = True  # with at_command: let the server have it, then cut
    stall_seconds: float = 0.0  # with at_command: hold the reply back this long instead


class CutProxy:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        self.cut = Cut()
        self.cuts = 0  # how many connections were cut
        self.relayed = 0  # bytes relayed, all connections
        self.commands: list[bytes] = []  # command lines the client sent (counting)
        self.server_bytes = 0  # bytes the server sent
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def set(self, cut: Cut) -> None:
        with self._lock:
            self.cut = cut
            self.relayed = 0

    def reset_counts(self) -> None:
        with self._lock:
            self.commands = []
            self.server_bytes = 0

    def close(self) -> None:
        self._closing = True
        self._listener.close()

    def __enter__(self) -> CutProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- relaying ----------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            conn = _Conn(self, client, server)
            threading.Thread(target=conn.pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=conn.pump, args=(server, client, False), daemon=True).start()


_TAGGED = re.compile(rb"^[A-Za-z0-9.]+ [A-Za-z]")


def _command_lines(data: bytes) -> list[bytes]:
    """Tagged command lines in a chunk the client sent (literal data is rare here)."""
    return [line[:300] for line in data.split(b"\r\n") if _TAGGED.match(line)]


class _Conn:
    def __init__(self, proxy: CutProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.dead = threading.Event()
        self.stall = threading.Event()
        self.swallow_tag: bytes | None = None  # drop the reply that completes this tag

    def kill(self, counted: bool = True) -> None:
        with self.proxy._lock:
            if self.dead.is_set():
                return
            self.dead.set()
            if counted:
                self.proxy.cuts += 1
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        while not self.dead.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.kill(counted=False)  # an ordinary end of the connection
                return
            cut = self.proxy.cut
            if upstream and cut.at_command and cut.at_command in data.upper():
                if cut.stall_seconds:
                    self.stall.set()
                elif not cut.forward_first:
                    self.kill()
                    return
                else:
                    # The server gets the command (and its literal, through any "+"
                    # continuation); the line dies just before the tagged reply.
                    start = data.rfind(b"\n", 0, data.upper().index(cut.at_command)) + 1
                    self.swallow_tag = data[start:].split(b" ", 1)[0]
            if not upstream and self.swallow_tag is not None and (
                data.startswith(self.swallow_tag + b" ")
                or b"\n" + self.swallow_tag + b" " in data
            ):
                self.kill()
                return
            if not upstream and self.stall.is_set():
                self.dead.wait(cut.stall_seconds)
                self.stall.clear()
            with self.proxy._lock:
                before = self.proxy.relayed
                self.proxy.relayed += len(data)
                if upstream:
                    self.proxy.commands += _command_lines(data)
                else:
                    self.proxy.server_bytes += len(data)
            if cut.after_bytes is not None and before + len(data) > cut.after_bytes:
                keep = max(0, cut.after_bytes - before)
                with contextlib.suppress(OSError):
                    dst.sendall(data[:keep])
                self.kill()
                return
            try:
                dst.sendall(data)
            except OSError:
                self.kill()
                return
