"""Loopback stand-ins for Gmail and Exchange / Microsoft 365, in front of the test Dovecot.

No real Gmail or Exchange server can run in a test, so these proxies give the private
Dovecot (tests/dovecot.py) the documented behaviour of each service where it matters to
how inbox-guard shows its mark: Gmail's labels (:class:`GmailStandIn`) and Exchange's
refusal of client-defined keywords (:class:`ExchangeStandIn`). Usage::

    with GmailStandIn(dovecot.port) as proxy:
        client = IMAPClient("127.0.0.1", port=proxy.port, ssl=False)

Both are plain-TCP proxies on 127.0.0.1 (no TLS, no STARTTLS) serving any number of
connections at once, each relayed by two threads. The client's side is read command by
command, the server's response by response, literals included (the line and literal
grammar of tests/faults.py). Commands a stand-in watches (LOGIN, SELECT, EXAMINE, CLOSE,
UNSELECT, and per personality STORE / FETCH) are read whole before anything is sent on:
the proxy answers the client's synchronising literals itself with ``+`` and sends them on
as LITERAL+ (``{n+}``, which Dovecot announces), so the server never sends an unexpected
continuation. Anything else, IDLE and AUTHENTICATE exchanges included, is relayed as it
comes. To carry out a command itself, a stand-in may send its own commands (tags ``SI<n>``)
on the client's connection while the client waits for its answer; their untagged answers
are consumed, and any unsolicited ones (EXISTS, ...) are passed on to the client before
the tagged answer. This assumes a client that does not pipeline a watched command behind
others (imapclient never pipelines).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Self

from .faults import _LITERAL, _is, _tag_and_name

# Parsed command arguments: an atom or string is bytes, a parenthesised list a list.
Token = Any

_OWN_TIMEOUT = 30.0  # seconds to wait for Dovecot's answer to the proxy's own command


# -- reading and writing IMAP ------------------------------------------------------------


class _Reader:
    """Blocking reads of lines (CRLF kept) and literals from a socket; b"" at the end."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        self.buf += data
        return bool(data)

    def readline(self) -> bytes:
        while b"\n" not in self.buf:
            if not self._fill():
                return b""
        end = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:end], self.buf[end:]
        return line

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                return b""
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def parts(self, first: bytes) -> list[bytes] | None:
        """``first`` and, while a line ends in a literal, the literal and the next line:
        [line, literal, line, ...]; None if the stream ends before the last line."""
        parts = [first]
        line = first
        while (m := _LITERAL.search(line)) is not None:
            literal = self.read(int(m.group(1)))
            line = self.readline()
            if not line:
                return None
            parts += [literal, line]
        return parts


def _tokens(parts: list[bytes]) -> list[Token]:
    """The tokens of a command ([line, literal, line, ...]): atoms, strings and literals
    as bytes, parenthesised lists as lists. An atom keeps a ``[...]`` section whole (so
    ``BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]`` is one token)."""
    root: list[Token] = []
    stack = [root]
    for i in range(0, len(parts), 2):
        line = parts[i].rstrip(b"\r\n")
        literal = parts[i + 1] if i + 1 < len(parts) else None
        if literal is not None:
            line = line[: line.rindex(b"{")].rstrip(b"~")
        j = 0
        while j < len(line):
            c = line[j : j + 1]
            if c == b" ":
                j += 1
            elif c == b"(":
                inner: list[Token] = []
                stack[-1].append(inner)
                stack.append(inner)
                j += 1
            elif c == b")":
                if len(stack) > 1:
                    stack.pop()
                j += 1
            elif c == b'"':
                out = bytearray()
                j += 1
                while j < len(line) and line[j : j + 1] != b'"':
                    if line[j : j + 1] == b"\\":
                        j += 1
                    out += line[j : j + 1]
                    j += 1
                stack[-1].append(bytes(out))
                j += 1
            else:
                k, depth = j, 0
                while k < len(line):
                    ch = line[k : k + 1]
                    if ch == b"[":
                        depth += 1
                    elif ch == b"]":
                        depth -= 1
                    elif depth <= 0 and ch in (b" ", b"(", b")"):
                        break
                    k += 1
                stack[-1].append(line[j:k])
                j = k
        if literal is not None:
            stack[-1].append(literal)
    return root


def astring(value: bytes, plus: bool = False) -> bytes:
    """``value`` as an IMAP string: quoted if it can be, else a literal (``{n+}`` from a
    client when ``plus``, ``{n}`` in a server's response)."""
    if all(0x20 <= b < 0x7F for b in value):
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d%s}\r\n" % (len(value), b"+" if plus else b"") + value


def _render(token: Token) -> bytes:
    """An atom, or a list of atoms, as it is written (for rebuilding FETCH item lists)."""
    if isinstance(token, list):
        return b"(" + b" ".join(_render(t) for t in token) + b")"
    return bytes(token)


def _items(token: Token) -> list[bytes]:
    """A parenthesised list, or one item written without parentheses, as a list."""
    return [bytes(t) for t in token] if isinstance(token, list) else [bytes(token)]


def _first_line(response: bytes) -> bytes:
    return response[: response.index(b"\n") + 1].rstrip(b"\r\n")


def _with_first_line(response: bytes, first: bytes) -> bytes:
    return first + b"\r\n" + response[response.index(b"\n") + 1 :]


def _mailbox(name: bytes) -> bytes:
    """A mailbox name as the server means it (INBOX is case-insensitive)."""
    return b"INBOX" if name.upper() == b"INBOX" else name


@dataclass
class Command:
    """A client's command read whole: its raw parts ([line, literal, line, ...], CRLF kept),
    tag, upper-cased name (``b"UID STORE"``, ``b"SELECT"``) and argument tokens."""

    parts: list[bytes]
    tag: bytes
    name: bytes
    args: list[Token]

    @classmethod
    def parse(cls, parts: list[bytes]) -> Command:
        tokens = _tokens(parts)
        tag, name, args = bytes(tokens[0]), bytes(tokens[1]).upper(), tokens[2:]
        if name == b"UID" and args:
            name, args = b"UID " + bytes(args[0]).upper(), args[1:]
        return cls(parts, tag, name, args)

    def raw(self) -> bytes:
        """The command as sent on to Dovecot: synchronising literals become LITERAL+ ones
        (the proxy has already answered the client's ``+``)."""
        out = []
        for i, part in enumerate(self.parts):
            if i % 2 == 0 and i + 1 < len(self.parts):
                part = re.sub(rb"\{(\d+)\}(\r?\n)$", rb"{\1+}\2", part)
            out.append(part)
        return b"".join(out)


# -- one connection ----------------------------------------------------------------------


@dataclass
class _Own:
    """A command the proxy sent on the client's connection, and what came back."""

    tag: bytes
    untagged: list[bytes] = field(default_factory=list)
    tagged: bytes = b""
    done: threading.Event = field(default_factory=threading.Event)


class Session:
    """One client connection and its own connection to Dovecot, with what the stand-ins
    track: the user (from LOGIN; b"" after AUTHENTICATE), the selected mailbox (as named on
    the wire, i.e. modified UTF-7; None when none is) and its UIDVALIDITY."""

    def __init__(self, proxy: StandIn, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.user = b""
        self.selected: bytes | None = None
        self.uidvalidity = 0
        self.pending_select: tuple[bytes, bytes] | None = None  # (tag, mailbox)
        # Gmail: (tag, {sequence number: rendered labels}) for a FETCH under way whose
        # answers get X-GM-LABELS inserted.
        self.label_fetch: tuple[bytes, dict[int, bytes]] | None = None
        self._own: _Own | None = None
        self._tags = itertools.count(1)
        self._client_lock = threading.Lock()
        self._closed = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._from_client, daemon=True).start()
        threading.Thread(target=self._from_server, daemon=True).start()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        own = self._own
        if own is not None:
            own.done.set()

    # writing

    def to_client(self, data: bytes) -> None:
        with self._client_lock:
            self.client.sendall(data)

    def to_server(self, data: bytes) -> None:
        self.server.sendall(data)

    def reply(self, tag: bytes, text: bytes) -> None:
        """Answer a client's command (``text`` like b"OK Success" or b"NO ...")."""
        self.to_client(tag + b" " + text + b"\r\n")

    def relay(self, response: bytes) -> None:
        """A response from Dovecot to the client, through the stand-in's rewriting."""
        self.to_client(self.proxy.on_response(self, response))

    def run(self, command: bytes) -> tuple[list[bytes], bytes]:
        """Send ``command`` (no tag, no CRLF) to Dovecot on this connection; return its
        untagged responses and its tagged line. The caller passes on what it does not use
        (:meth:`relay`)."""
        own = _Own(b"SI%d" % next(self._tags))
        self._own = own
        self.to_server(own.tag + b" " + command + b"\r\n")
        if not own.done.wait(_OWN_TIMEOUT) or self._closed.is_set():
            self.close()
            raise ConnectionError(f"no answer from the server to {command[:60]!r}")
        return own.untagged, own.tagged

    # the two directions

    def _from_client(self) -> None:
        reader = _Reader(self.client)
        try:
            while (line := reader.readline()) != b"":
                parsed = _tag_and_name(line.rstrip(b"\r\n"))
                if parsed is not None:
                    seen = line.rstrip(b"\r\n")[:300]
                    if _is(parsed[1], b"LOGIN"):
                        seen = seen.rsplit(b" ", 1)[0] + b" <password>"
                    with self.proxy._lock:
                        self.proxy.commands.append(seen)
                if parsed is not None and any(_is(parsed[1], w) for w in self.proxy.watched):
                    command = self._read_whole(reader, line)
                    if command is None:
                        return
                    if not self.proxy.on_command(self, command):
                        self.to_server(command.raw())
                    continue
                # Relayed as it comes; a synchronising literal waits for the server's "+".
                self.to_server(line)
                while (m := _LITERAL.search(line)) is not None:
                    literal = reader.read(int(m.group(1)))
                    line = reader.readline()
                    if not line:
                        return
                    self.to_server(literal + line)
        except (OSError, ConnectionError):
            pass
        finally:
            self.close()

    def _read_whole(self, reader: _Reader, first: bytes) -> Command | None:
        parts = [first]
        line = first
        while (m := _LITERAL.search(line)) is not None:
            if b"+" not in m.group(0):
                self.to_client(b"+ Ready for literal data\r\n")
            literal = reader.read(int(m.group(1)))
            line = reader.readline()
            if not line:
                return None
            parts += [literal, line]
        return Command.parse(parts)

    def _from_server(self) -> None:
        reader = _Reader(self.server)
        try:
            while (line := reader.readline()) != b"":
                parts = reader.parts(line)
                if parts is None:
                    return
                response = b"".join(parts)
                own = self._own
                if own is not None and response.startswith(own.tag + b" "):
                    own.tagged = _first_line(response)
                    self._own = None
                    own.done.set()
                elif own is not None and response.startswith(b"* "):
                    own.untagged.append(response)
                else:
                    self.relay(response)
        except OSError:
            pass
        finally:
            self.close()


# -- the proxies -------------------------------------------------------------------------


class StandIn:
    """A loopback IMAP proxy in front of ``127.0.0.1:target_port`` (see the module's
    docstring); :attr:`port` is where clients connect. The base class only relays and
    tracks LOGIN / SELECT / EXAMINE / CLOSE / UNSELECT; the personalities override
    :meth:`on_command` and :meth:`on_response`."""

    watched: tuple[bytes, ...] = (b"LOGIN", b"SELECT", b"EXAMINE", b"CLOSE", b"UNSELECT")

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        # First lines of the clients' tagged commands (a LOGIN's password left out).
        self.commands: list[bytes] = []
        self.connections = 0  # accepted so far
        self._sessions: list[Session] = []
        self._lock = threading.Lock()
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closing = True
        self._listener.close()
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=None)
            except OSError:
                client.close()
                continue
            session = Session(self, client, server)
            with self._lock:
                self._sessions.append(session)
                self.connections += 1
            session.start()

    # hooks

    def on_command(self, session: Session, command: Command) -> bool:
        """A watched command, read whole; True when the stand-in has answered it itself,
        False to send it on to Dovecot. The base class only tracks state."""
        if command.name == b"LOGIN" and command.args:
            session.user = bytes(command.args[0])
        elif command.name in (b"SELECT", b"EXAMINE") and command.args:
            # RFC 3501 6.3.1: a SELECT deselects the current mailbox even if it fails.
            session.selected = None
            session.pending_select = (command.tag, _mailbox(bytes(command.args[0])))
        elif command.name in (b"CLOSE", b"UNSELECT"):
            session.selected = None
        return False

    def on_response(self, session: Session, response: bytes) -> bytes:
        """A whole response from Dovecot (first line, literals and all) on its way to the
        client; returns what the client gets. The base class only tracks SELECT."""
        if session.pending_select is not None:
            tag, mailbox = session.pending_select
            first = _first_line(response)
            if (m := re.match(rb"\* OK \[UIDVALIDITY (\d+)\]", first)) is not None:
                session.uidvalidity = int(m.group(1))
            elif first.startswith(tag + b" "):
                session.pending_select = None
                if first[len(tag) + 1 :].upper().startswith(b"OK"):
                    session.selected = mailbox
        return response


class GmailStandIn(StandIn):
    """A stand-in for Gmail's IMAP service with its extensions, as Google documents them in
    "IMAP Extensions" (https://developers.google.com/gmail/imap/imap-extensions):

    - "Gmail advertises its extension support in its response to the CAPABILITY command.
      The presence of X-GM-EXT-1 [...] indicates support": ``X-GM-EXT-1`` is added to
      every capability list Dovecot announces (``* CAPABILITY`` and the ``[CAPABILITY ...]``
      codes of the greeting and of the LOGIN / AUTHENTICATE OK), before and after login,
      as Gmail's own example handshake shows it.
    - "Access to Gmail labels: X-GM-LABELS": Gmail treats labels as folders for IMAP, and a
      message's labels are read with ``FETCH (X-GM-LABELS)`` and added with
      ``STORE +X-GM-LABELS`` / ``+X-GM-LABELS.SILENT``, labels written as IMAP strings the
      way folder names are (atoms, quoted strings or literals; modified UTF-7 for
      non-ASCII). Here, ``[UID] STORE <set> +X-GM-LABELS[.SILENT] (<labels>)`` in the
      selected mailbox is carried out on Dovecot as, per label: ``CREATE "<label>"``
      (``NO [ALREADYEXISTS]`` is fine), then ``UID COPY <uids> "<label>"`` of the messages
      that do not have the label yet; then ``<tag> OK Success``. Without ``.SILENT`` the
      client first gets ``* <n> FETCH (X-GM-LABELS (<all labels>) UID <uid>)`` per message,
      as Gmail's example answer to STORE does.
    - Labels are a set: the proxy keeps the labels it added in :attr:`labels`, keyed by
      (user, mailbox, UIDVALIDITY, UID), shared by all connections, and never copies a
      message into a label it has (nor into the mailbox it is in).
    - ``[UID] FETCH <set> (... X-GM-LABELS ...)`` is answered from that table: when
      X-GM-LABELS (with or without UID) is all that is asked, by the proxy alone
      (``* <n> FETCH (UID <uid> X-GM-LABELS (...))``); otherwise Dovecot answers the rest
      and the proxy puts ``X-GM-LABELS (...) `` first in each of its FETCH responses. A
      message in INBOX also carries the system label ``\\Inbox``, as in Google's example
      (``X-GM-LABELS (\\Inbox \\Sent Important "Muy Importante")``). Labels are answered
      as quoted strings in modified UTF-7, which imapclient's ``get_gmail_labels`` decodes.
    - Flags are untouched: ``\\Flagged`` stays a flag (Gmail shows it as a star) and
      keywords are kept (Gmail's PERMANENTFLAGS has ``\\*``, as Dovecot's does).

    Limits: removing or replacing labels (``-X-GM-LABELS``, ``X-GM-LABELS``) is refused with
    ``NO [CANNOT]`` (inbox-guard only adds), as are system labels (``\\Starred``,
    ``\\Important``, ...), and a label STORE with no mailbox selected gets ``BAD``. Labels are
    known only if added through this proxy instance (not by copying in Dovecot directly,
    not by another proxy); a copy in a label folder does not carry the label when seen from
    there, unlike Gmail's one-message-many-labels. X-GM-MSGID, X-GM-THRID and X-GM-RAW are
    not implemented (Dovecot answers BAD). The proxy finds the messages of a command's set
    with its own ``[UID] FETCH <set> (UID)`` and, for a FETCH that asks for more than labels,
    puts the labels into Dovecot's answers by sequence number: this assumes no expunge by
    another connection is announced between the two.
    """

    watched = (*StandIn.watched, b"STORE", b"UID STORE", b"FETCH", b"UID FETCH")
    CAPABILITY = b"X-GM-EXT-1"

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.labels: dict[tuple[bytes, bytes, int, int], list[bytes]] = {}

    # what the client sees

    def on_response(self, session: Session, response: bytes) -> bytes:
        response = super().on_response(session, response)
        first = _first_line(response)
        new = first
        if re.match(rb"\* CAPABILITY ", new, re.I) and self.CAPABILITY not in new.split():
            new += b" " + self.CAPABILITY
        new = re.sub(rb"(\[CAPABILITY [^\]]*)\]", self._add_capability, new, flags=re.I)
        if session.label_fetch is not None:
            tag, labels = session.label_fetch
            m = re.match(rb"\* (\d+) FETCH \(", new)
            if m is not None and int(m.group(1)) in labels:
                new = new[: m.end()] + labels[int(m.group(1))] + b" " + new[m.end() :]
            elif new.startswith(tag + b" "):
                session.label_fetch = None
        return response if new == first else _with_first_line(response, new)

    def _add_capability(self, m: re.Match[bytes]) -> bytes:
        code = m.group(1)
        return code + (b"]" if self.CAPABILITY in code.split() else b" " + self.CAPABILITY + b"]")

    # labels

    def labels_of(self, session: Session, uid: int) -> list[bytes]:
        """The labels a message in the selected mailbox has, system labels included."""
        assert session.selected is not None
        with self._lock:
            added = list(self.labels.get(self._key(session, uid), []))
        return ([b"\\Inbox"] if session.selected == b"INBOX" else []) + added

    def _key(self, session: Session, uid: int) -> tuple[bytes, bytes, int, int]:
        assert session.selected is not None
        return (session.user, session.selected, session.uidvalidity, uid)

    def _rendered(self, session: Session, uid: int) -> bytes:
        return b"X-GM-LABELS " + _render_strings(self.labels_of(session, uid))

    def _uids(self, session: Session, command: Command) -> dict[int, int]:
        """Sequence number -> UID of the messages ``command``'s set names (a FETCH (UID) of
        the same set, by UID or by sequence number as the command is)."""
        fetch = b"UID FETCH" if command.name.startswith(b"UID ") else b"FETCH"
        untagged, _tagged = session.run(fetch + b" " + bytes(command.args[0]) + b" (UID)")
        found = {}
        for response in untagged:
            m = re.fullmatch(rb"\* (\d+) FETCH \(UID (\d+)(?: MODSEQ \(\d+\))?\)\r\n", response)
            if m is None:
                session.relay(response)
            else:
                found[int(m.group(1))] = int(m.group(2))
        return found

    def on_command(self, session: Session, command: Command) -> bool:
        if super().on_command(session, command):
            return True
        args = command.args
        if command.name in (b"STORE", b"UID STORE") and len(args) >= 3:
            item = bytes(args[1]).upper()
            if item.lstrip(b"+-").split(b".")[0] == b"X-GM-LABELS":
                self._store_labels(session, command, item, _items(args[2]))
                return True
        if command.name in (b"FETCH", b"UID FETCH") and len(args) >= 2:
            items = _items(args[1])
            if b"X-GM-LABELS" in (i.upper() for i in items):
                self._fetch_labels(session, command, items)
                return True
        return False

    def _store_labels(
        self, session: Session, command: Command, item: bytes, labels: list[bytes]
    ) -> None:
        if not item.startswith(b"+"):
            session.reply(command.tag, b"NO [CANNOT] the stand-in only adds labels")
            return
        if any(label.startswith(b"\\") for label in labels):
            session.reply(command.tag, b"NO [CANNOT] the stand-in has no system labels")
            return
        if session.selected is None:
            session.reply(command.tag, b"BAD No mailbox selected")
            return
        found = self._uids(session, command)
        for label in labels:
            with self._lock:
                todo = [
                    uid
                    for uid in found.values()
                    if label != session.selected
                    and label not in self.labels.get(self._key(session, uid), [])
                ]
            if todo:
                error = self._copy(session, todo, label)
                if error:
                    session.reply(command.tag, b"NO [CANNOT] " + error)
                    return
            with self._lock:
                for uid in todo:
                    self.labels.setdefault(self._key(session, uid), []).append(label)
        if not item.endswith(b".SILENT"):
            for seq, uid in sorted(found.items()):
                labels_item = self._rendered(session, uid)
                session.to_client(b"* %d FETCH (%s UID %d)\r\n" % (seq, labels_item, uid))
        session.reply(command.tag, b"OK Success")

    def _copy(self, session: Session, uids: list[int], label: bytes) -> bytes:
        """CREATE the label's folder if need be and COPY ``uids`` there; b"" when done,
        else the server's refusal."""
        untagged, tagged = session.run(b"CREATE " + astring(label, plus=True))
        for response in untagged:
            session.relay(response)
        if not re.match(rb"\S+ OK", tagged) and b"[ALREADYEXISTS]" not in tagged:
            return tagged.split(b" ", 1)[1]
        uid_set = b",".join(b"%d" % uid for uid in sorted(uids))
        untagged, tagged = session.run(b"UID COPY " + uid_set + b" " + astring(label, plus=True))
        for response in untagged:
            session.relay(response)
        return b"" if re.match(rb"\S+ OK", tagged) else tagged.split(b" ", 1)[1]

    def _fetch_labels(self, session: Session, command: Command, items: list[bytes]) -> None:
        if session.selected is None:
            session.reply(command.tag, b"BAD No mailbox selected")
            return
        found = self._uids(session, command)
        rest = [i for i in items if i.upper() not in (b"X-GM-LABELS", b"UID")]
        if not rest:
            for seq, uid in sorted(found.items()):
                labels_item = self._rendered(session, uid)
                session.to_client(b"* %d FETCH (UID %d %s)\r\n" % (seq, uid, labels_item))
            session.reply(command.tag, b"OK Success")
            return
        session.label_fetch = (
            command.tag,
            {seq: self._rendered(session, uid) for seq, uid in found.items()},
        )
        if command.name.startswith(b"UID "):
            rest = [b"UID", *rest]
        line = b" ".join(
            [command.tag, command.name, bytes(command.args[0]), _render(rest)]
            + [_render(t) for t in command.args[2:]]
        )
        session.to_server(line + b"\r\n")


def _render_strings(values: list[bytes]) -> bytes:
    """A parenthesised list of labels as a server writes them: system labels (``\\Inbox``)
    as atoms, the others as strings."""
    return b"(" + b" ".join(v if v.startswith(b"\\") else astring(v) for v in values) + b")"


class ExchangeStandIn(StandIn):
    """A stand-in for Microsoft Exchange / Microsoft 365 (Exchange Online) IMAP on the one
    point inbox-guard cares about: Exchange keeps no client-defined keywords.

    Microsoft's "[MS-STANXIMAP]: Exchange Internet Message Access Protocol (IMAP) Standards
    Compliance", section 2.2.4 "[RFC3501] Section 2.3.2, Flags Message Attribute"
    (https://learn.microsoft.com/en-us/openspecs/exchange_standards/ms-stanximap/a8c49281-d59a-4cb9-9b90-e091c1bc24d9):

    - V0005: on "Servers MAY permit the client to define new keywords in the mailbox",
      Exchange 2007-2019 "does not support client-defined keywords".
    - E0001: "Microsoft Exchange Server defines the $MDNSent keyword", set when the client
      sends a message delivery notification.

    So here:

    - ``* FLAGS (...)`` and ``* OK [PERMANENTFLAGS (...)]`` (the SELECT / EXAMINE answers)
      keep the system flags and ``$MDNSent`` and lose ``\\*`` and every other keyword, the
      shape Exchange answers with in client logs, e.g. node-imap issue #602
      (https://github.com/mscdex/node-imap/issues/602): ``* FLAGS (\\Seen \\Answered
      \\Flagged \\Deleted \\Draft $MDNSent)`` and ``* OK [PERMANENTFLAGS (\\Seen \\Answered
      \\Flagged \\Deleted \\Draft $MDNSent)] Permanent flags``. The FLAGS of FETCH answers
      lose keywords too (only where Dovecot writes FLAGS: first, or right after UID).
    - ``[UID] STORE <set> [+-]FLAGS[.SILENT] (...)`` naming any keyword other than
      ``$MDNSent`` never reaches Dovecot: the client gets :attr:`keyword_reply`, by default
      ``BAD Command Argument Error. 11``. The documentation says only that keywords are not
      supported, not what STORE answers; the default is what Exchange was seen to answer to
      a STORE of a keyword in node-imap #602 (the report quotes only that text, which
      Exchange sends as a tagged BAD, as its other reports show: MailKit #1139,
      node-imap #214). Pass ``keyword_reply=b"NO ..."`` to try a NO instead.
    - System flags (``\\Flagged``, ``\\Seen``, ...) are stored as usual.

    Limits: only keywords are modelled, not Exchange's other differences (capabilities,
    folder names, SEARCH, APPEND of keywords, which is relayed unchanged).
    """

    watched = (*StandIn.watched, b"STORE", b"UID STORE")
    SERVER_KEYWORDS = frozenset({b"$MDNSENT"})  # upper-cased

    def __init__(
        self, target_port: int, keyword_reply: bytes = b"BAD Command Argument Error. 11"
    ) -> None:
        super().__init__(target_port)
        self.keyword_reply = keyword_reply
        self.refused: list[bytes] = []  # first lines of the STOREs refused

    def _kept(self, flag: bytes) -> bool:
        if flag == b"\\*":
            return False
        return flag.startswith(b"\\") or flag.upper() in self.SERVER_KEYWORDS

    def _filtered(self, m: re.Match[bytes]) -> bytes:
        flags = [f for f in m.group(2).split() if self._kept(f)]
        return m.group(1) + b" ".join(flags) + b")"

    def on_response(self, session: Session, response: bytes) -> bytes:
        response = super().on_response(session, response)
        first = _first_line(response)
        new = re.sub(
            rb"^(\* FLAGS \(|\* OK \[PERMANENTFLAGS \(|\* \d+ FETCH \((?:UID \d+ )?FLAGS \()"
            rb"([^)]*)\)",
            self._filtered,
            first,
            flags=re.I,
        )
        return response if new == first else _with_first_line(response, new)

    def on_command(self, session: Session, command: Command) -> bool:
        if super().on_command(session, command):
            return True
        args = command.args
        if command.name in (b"STORE", b"UID STORE") and len(args) >= 3:
            item = bytes(args[1]).upper()
            if item.lstrip(b"+-").split(b".")[0] == b"FLAGS" and not all(
                self._kept(f) and f != b"\\*" for f in _items(args[2])
            ):
                with self._lock:
                    self.refused.append(command.parts[0].rstrip(b"\r\n"))
                session.reply(command.tag, self.keyword_reply)
                return True
        return False
