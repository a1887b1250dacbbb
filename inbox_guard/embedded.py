"""An IMAP server inside this process, for ``inbox-guard demo``.

pymap's in-memory ("dict") backend is a real IMAP4rev1 implementation; it is served
on a free loopback port from a background thread with its own asyncio loop, so the
demo talks real IMAP through the same code as a real account. Nothing is stored on
disk and nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
from contextlib import AsyncExitStack
from typing import Any

from .errors import InboxGuardError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedServer:
    host = "127.0.0.1"

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self.password = password
        self.port = _free_port()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="embedded-imap", daemon=True)

    def _args(self) -> argparse.Namespace:
        from pymap.backend.dict import DictBackend

        return argparse.Namespace(
            debug=False,
            skip_services=[],
            backend="dict",
            host=[self.host],
            port=str(self.port),
            cert=None,
            key=None,
            tls=False,
            proxy_protocol=None,
            passlib_cfg=None,
            inherited_sockets=None,
            demo_data=False,
            demo_user=self.user,
            demo_password=self.password,
            backend_type=DictBackend,
        )

    async def _serve(self) -> None:
        from pymap.service import services

        args = self._args()
        backend, config = await args.backend_type.init(args)
        config.apply_context()
        service: Any = services["imap"](backend, config)
        async with AsyncExitStack() as stack:
            await backend.start(stack)
            await service.start(stack)
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()

    def start(self, timeout: float = 20.0) -> EmbeddedServer:
        try:
            import pymap  # noqa: F401
        except ImportError:
            raise InboxGuardError(
                "the demo needs pymap (an embedded IMAP server): pip install pymap"
            ) from None
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise InboxGuardError(f"the embedded IMAP server did not start: {self._error}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Seeder:
    """Fills the embedded server with sample mail and reads it back for display.

    Only for the demo's own in-memory server: it reads whole messages, which the
    product never does to a real mailbox.
    """

    def __init__(self, server: EmbeddedServer) -> None:
        from imapclient import IMAPClient

        self._c = IMAPClient(server.host, port=server.port, ssl=False, timeout=30)
        self._c.normalise_times = False
        self._c.login(server.user, server.password)

    def create(self, folder: str) -> None:
        self._c.create_folder(folder)

    def append(self, folder: str, raw: bytes, when: Any, flags: tuple[str, ...] = ()) -> int:
        resp = self._c.append(folder, raw, flags=flags, msg_time=when)
        return int(resp.split(b"]")[0].split()[-1])  # [APPENDUID <validity> <uid>]

    def read(self, folder: str) -> dict[int, tuple[set[str], bytes]]:
        self._c.select_folder(folder, readonly=True)
        uids = self._c.search(["ALL"])
        data = self._c.fetch(uids, ["FLAGS", "BODY.PEEK[]"]) if uids else {}
        return {
            uid: ({f.decode() for f in d[b"FLAGS"]} - {"\\Recent"}, d[b"BODY[]"])
            for uid, d in data.items()
        }

    def close(self) -> None:
        self._c.logout()
