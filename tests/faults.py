"""A loopback TCP proxy that cuts connections on purpose, for fault tests.

Sits between inbox-guard and Dovecot and reads the IMAP both ways (lines and
literals, so message text is never taken for a command). It can cut a connection
after a number of bytes (counted both ways), or when the client sends a chosen
command, either before forwarding it (the server never sees it) or after (the server
does it, the client never hears back: the case that tests exactly-once). It can also
stall a reply, or refuse chosen commands the way a server does, with a tagged NO.

A :class:`Trip` is for killing a worker at a point of its progress seen from outside:
the proxy holds the traffic at that point, calls a hook (which kills the worker and
returns once it is dead), then cuts the connection.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass
class Cut:
    after_bytes: int | None = None  # total bytes relayed (both ways) before cutting
    at_command: bytes | None = None  # e.g. b"UID STORE", b"APPEND", b"UID FETCH"
    forward_first: bool = True  # with at_command: let the server have it, then cut
    stall_seconds: float = 0.0  # with at_command: hold the reply back this long instead
    # A refusing server: a command line this says yes to never reaches the server; the
    # proxy answers it "NO [SERVERBUG]" itself (for one-line commands such as STORE).
    refuse: Callable[[bytes], bool] | None = None
    # A server that ends the session: a command line this says yes to is answered
    # "* BYE <bye_text>" and the connection is closed (RFC 3501 7.1.5).
    bye: Callable[[bytes], bool] | None = None
    bye_text: bytes = b"[UNAVAILABLE] the test proxy is shutting down"


@dataclass
class Trip:
    """Call ``hook`` once, from the proxy's thread, when the client reaches a point; the
    traffic at that point is held and, once the hook returns, the connection is cut.

    ``at`` is where, relative to the client's ``command`` (e.g. b"UID STORE", b"APPEND"):

    - ``"sent"``: the client has sent it; the server never sees it.
    - ``"answered"``: the server has done it and its tagged reply reached the proxy; the
      client never hears it.
    - ``"next"``: the client heard the reply and sent its next command (not LOGOUT,
      which ends the session rather than doing a step); the server never sees that one.

    ``hook`` gets the line it tripped on.
    """

    command: bytes
    at: Literal["sent", "answered", "next"]
    hook: Callable[[bytes], None]


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
        self.trip: Trip | None = None  # armed, not yet tripped
        self.tripped: bytes | None = None  # the line the last trip fired on
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def set(self, cut: Cut) -> None:
        with self._lock:
            self.cut = cut
            self.relayed = 0

    def arm(self, trip: Trip | None) -> None:
        """Watch for ``trip`` (None disarms); :attr:`tripped` says whether it fired."""
        with self._lock:
            self.trip = trip
            self.tripped = None

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
_LITERAL = re.compile(rb"~?\{(\d+)\+?\}\r?\n$")


class Lines:
    """One direction of an IMAP stream cut into lines: what :meth:`feed` returns are the
    first physical lines of each command or response (a tag and a name, or ``*`` or
    ``+``), completed; literals and the rest of a line after a literal are skipped."""

    def __init__(self) -> None:
        self._partial = b""
        self._literal = 0  # literal bytes still to skip
        self._continued = False  # the line under way is the rest of one after a literal

    def feed(self, data: bytes) -> list[bytes]:
        out = []
        i = 0
        while i < len(data):
            if self._literal:
                skip = min(self._literal, len(data) - i)
                self._literal -= skip
                i += skip
                continue
            end = data.find(b"\n", i)
            if end < 0:
                self._partial += data[i:]
                break
            line = self._partial + data[i : end + 1]
            self._partial = b""
            i = end + 1
            if not self._continued:
                out.append(line.rstrip(b"\r\n"))
            m = _LITERAL.search(line)
            self._literal = int(m.group(1)) if m else 0
            self._continued = m is not None
        return out


def _tag_and_name(line: bytes) -> tuple[bytes, bytes] | None:
    """(tag, upper-cased command and arguments) of a tagged command line."""
    if not _TAGGED.match(line):
        return None
    tag, rest = line.split(b" ", 1)
    return tag, rest.upper()


def _is(name: bytes, command: bytes) -> bool:
    return name == command or name.startswith(command + b" ")


def _answers(line: bytes, tag: bytes | None) -> bool:
    return tag is not None and line.startswith(tag + b" ")


class _Conn:
    def __init__(self, proxy: CutProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.dead = threading.Event()
        self.stall = threading.Event()
        self.swallow_tag: bytes | None = None  # cut at the reply that completes this tag
        self.trip_tag: bytes | None = None  # the tag of the command a trip watches
        self.heard = False  # a "next" trip's command was answered and relayed

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

    def _fire(self, trip: Trip, line: bytes) -> bool:
        """Call the trip's hook (once, whichever connection gets there), then cut."""
        with self.proxy._lock:
            if self.proxy.trip is not trip:
                return False
            self.proxy.trip = None
            self.proxy.tripped = line
        try:
            trip.hook(line)
        finally:
            self.kill(counted=False)
        return True

    def _client_lines(self, lines: list[bytes], cut: Cut) -> bool:
        """Watch what the client sends; True when the connection is cut here."""
        for line in lines:
            parsed = _tag_and_name(line)
            if parsed is None:
                continue
            tag, name = parsed
            trip = self.proxy.trip
            if trip is not None:
                if (trip.at == "sent" and _is(name, trip.command)) or (
                    trip.at == "next" and self.heard and not _is(name, b"LOGOUT")
                ):
                    if self._fire(trip, line):
                        return True
                elif trip.at != "sent" and _is(name, trip.command):
                    self.trip_tag = tag
            if cut.at_command and _is(name, cut.at_command):
                if cut.stall_seconds:
                    self.stall.set()
                elif not cut.forward_first:
                    self.kill()
                    return True
                else:
                    # The server gets the command (and its literals, through any "+"
                    # continuation); the line dies just before the tagged reply.
                    self.swallow_tag = tag
        return False

    def _server_lines(self, lines: list[bytes]) -> bool:
        """Watch what the server sends; True when the connection is cut here."""
        for line in lines:
            if _answers(line, self.trip_tag):
                self.trip_tag = None
                trip = self.proxy.trip
                if trip is not None and trip.at == "answered" and self._fire(trip, line):
                    return True
                self.heard = True  # relayed below; the client's next command trips
            if _answers(line, self.swallow_tag):
                self.kill()
                return True
        return False

    def pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        reader = Lines()
        while not self.dead.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data or self.dead.is_set():
                self.kill(counted=False)  # an ordinary end of the connection
                return
            cut = self.proxy.cut
            lines = reader.feed(data)
            if upstream and cut.refuse is not None and any(map(cut.refuse, lines)):
                assert len(lines) == 1 and data.endswith(b"\r\n"), "refuse one-line commands"
                tag = lines[0].split(b" ", 1)[0]
                with contextlib.suppress(OSError):
                    src.sendall(tag + b" NO [SERVERBUG] refused by the test proxy\r\n")
                continue
            if upstream and cut.bye is not None and any(map(cut.bye, lines)):
                with contextlib.suppress(OSError):
                    src.sendall(b"* BYE " + cut.bye_text + b"\r\n")
                self.kill()
                return
            if upstream and self._client_lines(lines, cut):
                return
            if not upstream and self._server_lines(lines):
                return
            if not upstream and self.stall.is_set():
                self.dead.wait(cut.stall_seconds)
                self.stall.clear()
            with self.proxy._lock:
                before = self.proxy.relayed
                self.proxy.relayed += len(data)
                if upstream:
                    self.proxy.commands += [ln[:300] for ln in lines if _TAGGED.match(ln)]
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
