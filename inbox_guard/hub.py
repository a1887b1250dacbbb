"""What every account of one ``inbox-guard run`` shares, so that a thousand
practitioners cost a handful of threads and nothing while no mail comes:

- one scheduler whose jobs (passes, digests, briefs, IDLE news) run on a bounded pool
  of worker threads;
- a :class:`Pacer` for logins: a few at once, at most so many a second, so a start or a
  server's restart does not hammer the server or a provider's limits;
- one :class:`Watcher` thread that waits on every IDLE connection at once
  (``selectors``: the kernel wakes it only when a server has written something, or
  when an IDLE is due to be renewed).
"""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import logging
import random
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC
from typing import Any

from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)

LOGINS_AT_ONCE = 10
LOGINS_PER_SECOND = 50.0
MAX_WORKERS = 32


def workers_for(accounts: int) -> int:
    """Worker threads for ``accounts`` practitioners: four for one (a pass, a digest, a
    brief and IDLE news can coincide), never more than ``MAX_WORKERS``."""
    return max(4, min(MAX_WORKERS, 4 * accounts))


def jittered(seconds: float) -> float:
    """``seconds`` give or take a quarter, so that many accounts failing together
    (a server restart) do not all come back in the same instant."""
    return seconds * random.uniform(0.75, 1.25)


class Pacer:
    """At most ``at_once`` logins at a time, started at most ``per_second`` a second."""

    def __init__(self, at_once: int, per_second: float, stopping: threading.Event) -> None:
        self._slots = threading.BoundedSemaphore(at_once)
        self._gap = 1.0 / per_second
        self._next = 0.0
        self._lock = threading.Lock()
        self._stopping = stopping

    @contextmanager
    def login(self) -> Iterator[None]:
        with self._slots:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next)
                self._next = start + self._gap
            if start > now:
                self._stopping.wait(start - now)
            yield


Handler = Callable[[bool], None]


class Watcher:
    """One thread waiting on many sockets. ``watch(sock, until, handler)``: when ``sock``
    is readable, ``handler(True)`` runs on the pool; if it is not by ``until``
    (``time.monotonic()``), ``handler(False)``. Either way the socket is no longer
    watched until ``watch`` is called again."""

    def __init__(self, submit: Callable[[Callable[[], None]], None]) -> None:
        self._submit = submit
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._lock = threading.Lock()
        self._changes: list[tuple[socket.socket, float, Handler | None]] = []
        self._until: dict[socket.socket, tuple[float, Handler]] = {}
        # The deadlines in time order; an entry whose socket was watched again since
        # (or forgotten) is stale and skipped when it comes up.
        self._deadlines: list[tuple[float, int, socket.socket]] = []
        self._order = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="idle-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def watch(self, sock: socket.socket, until: float, handler: Handler) -> None:
        self._change(sock, until, handler)

    def forget(self, sock: socket.socket) -> None:
        self._change(sock, 0.0, None)

    def _change(self, sock: socket.socket, until: float, handler: Handler | None) -> None:
        with self._lock:
            self._changes.append((sock, until, handler))
        with suppress(BlockingIOError, OSError):
            self._wake_w.send(b"x")

    def stop(self) -> None:
        self._stopped = True
        with suppress(BlockingIOError, OSError):
            self._wake_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _apply_changes(self) -> None:
        with self._lock:
            changes, self._changes = self._changes, []
        for sock, until, handler in changes:
            if sock in self._until:
                del self._until[sock]
                with suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(sock)
            if handler is None:
                continue
            try:
                self._selector.register(sock, selectors.EVENT_READ)
            except (KeyError, ValueError, OSError):  # closed meanwhile: the handler finds out
                self._fire(sock, True, handler)
                continue
            self._until[sock] = (until, handler)
            heapq.heappush(self._deadlines, (until, next(self._order), sock))

    def _fire(self, sock: socket.socket, ready: bool, handler: Handler) -> None:
        self._until.pop(sock, None)
        with suppress(KeyError, ValueError, OSError):
            self._selector.unregister(sock)
        self._submit(lambda: handler(ready))

    def _run(self) -> None:
        while not self._stopped:
            self._apply_changes()
            now = time.monotonic()
            # Each wake costs O(log n), never a look at every socket: a thousand
            # practitioners' servers say "still here" several times a second.
            soonest = None
            while self._deadlines:
                until, _, late = self._deadlines[0]
                entry = self._until.get(late)
                if entry is None or entry[0] != until:
                    heapq.heappop(self._deadlines)  # stale
                elif until <= now:
                    heapq.heappop(self._deadlines)
                    self._fire(late, False, entry[1])
                else:
                    soonest = until
                    break
            timeout = None if soonest is None else max(0.0, soonest - now)
            for key, _ in self._selector.select(timeout):
                if key.fileobj is self._wake_r:
                    with suppress(BlockingIOError, OSError):
                        while self._wake_r.recv(4096):
                            pass
                    continue
                sock: Any = key.fileobj
                entry = self._until.get(sock)
                if entry is not None:
                    self._fire(sock, True, entry[1])


class _Pool(BasePoolExecutor):  # type: ignore[misc]
    """APScheduler's executor over the hub's own pool, which IDLE news shares."""

    def __init__(self, pool: concurrent.futures.ThreadPoolExecutor) -> None:
        super().__init__(pool)


class Hub:
    """The scheduler, workers, login pacer and IDLE watcher of one process."""

    def __init__(
        self,
        workers: int = 4,
        logins_at_once: int = LOGINS_AT_ONCE,
        logins_per_second: float = LOGINS_PER_SECOND,
    ) -> None:
        self.stopping = threading.Event()
        self._prefix = f"worker-{id(self):x}"
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=self._prefix)
        self.scheduler = BackgroundScheduler(timezone=UTC, executors={"default": _Pool(self.pool)})
        self.pacer = Pacer(logins_at_once, logins_per_second, self.stopping)
        self.watcher = Watcher(self.submit)

    def submit(self, work: Callable[[], None]) -> None:
        """Run ``work`` on a worker (not once the hub is stopping)."""
        if self.stopping.is_set():
            return
        with suppress(RuntimeError):  # the pool shut down meanwhile
            self.pool.submit(work)

    def start(self) -> None:
        self.scheduler.start()
        self.watcher.start()

    def stop(self, grace: float | None = None) -> bool:
        """Stop watching and let running jobs finish (they see their service stopping)
        for up to ``grace`` seconds (None: as long as they take); False when a job was
        still running then (say, a login waiting on a server that never answers)."""
        self.stopping.set()
        self.watcher.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.pool.shutdown(wait=grace is None)
        if grace is None:
            return True
        deadline = time.monotonic() + grace
        for thread in threading.enumerate():
            if thread.name.startswith(self._prefix):
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return not any(t.name.startswith(self._prefix) for t in threading.enumerate())
