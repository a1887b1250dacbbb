"""Push for one account: a second connection IDLEs (RFC 2177) on the inbox and makes
the pass due at once when the server announces mail.

No thread of its own: the hub's watcher waits on the socket with every other
account's, and each step (connect, begin IDLE, read what the server said, renew IDLE
before servers' 30-minute limit) runs briefly on a worker. Polling goes on regardless,
so a server without IDLE, or a dropped IDLE connection, only costs speed; the
connection is made again with jittered backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from apscheduler.schedulers import SchedulerNotRunningError

from .credentials import Secret
from .hub import Hub, jittered
from .mailbox import Mailbox
from .model import Settings
from .timing import IDLE_SECONDS, backoff

RETRY_CAP_SECONDS = 300.0
STEADY_SECONDS = 60.0  # an IDLE connection that lasted this long is no run of failures


class Push:
    def __init__(
        self,
        settings: Settings,
        secret: str | Secret,
        hub: Hub,
        job_id: str,
        due_now: Callable[[], None],
        stopping: threading.Event,
        log: logging.LoggerAdapter,  # type: ignore[type-arg]
    ) -> None:
        self.settings = settings
        self._secret = secret
        self._hub = hub
        self._job_id = job_id
        self._due_now = due_now
        self._stopping = stopping  # the service's
        self.log = log
        self._lock = threading.Lock()  # one step at a time on the connection
        self._box: Mailbox | None = None
        self._until = 0.0  # when the IDLE under way is renewed (time.monotonic())
        self._failures = 0
        self._since = 0.0  # when the connection under way began to IDLE
        self._stopped = False  # push's own: stop() was called
        self.waiting = threading.Event()  # an IDLE is under way (for tests)
        self.off = threading.Event()  # the server has no IDLE: polling only
        self.tried = threading.Event()  # the first begin() is over, whatever came of it

    def begin(self) -> None:
        """(On a worker) connect if need be, and begin IDLE."""
        account = self.settings.main.account
        with self._lock:
            if self._over():
                return
            try:
                fresh = False
                if self._box is None:
                    with self._hub.pacer.login():
                        if self._over():
                            return
                        self._box = Mailbox.connect(account, self._secret)
                    if b"IDLE" not in self._box.capabilities():
                        self.log.info(
                            "the server has no IDLE: polling every %d min",
                            self.settings.main.triage.poll_minutes,
                        )
                        self._close()
                        self.off.set()
                        return
                    self.log.info("push: waiting for new mail with IDLE")
                    fresh = True
                if self._box.idle_start(account.inbox) or fresh:
                    # On a new connection too: mail that came before its SELECT (since
                    # the last pass, or while push was away) is not announced.
                    self._due_now()
                self._until = time.monotonic() + IDLE_SECONDS
                if fresh:
                    self._since = time.monotonic()
                self._watch()
                self.waiting.set()
            except Exception as exc:  # push only ever costs speed, never the service
                self._failed(exc)
            finally:
                self.tried.set()

    def _over(self) -> bool:
        return self._stopped or self._stopping.is_set()

    def _watch(self) -> None:
        assert self._box is not None
        self._hub.watcher.watch(self._box.socket(), self._until, self._event)

    def _announced(self) -> None:
        self.log.info("push: new mail announced")
        self._due_now()

    def _event(self, readable: bool) -> None:
        """(On a worker) the server wrote something, or the IDLE is due for renewal."""
        with self._lock:
            if self._over() or self._box is None:
                return
            try:
                news, heard = self._box.idle_heard() if readable else (False, False)
                if news:
                    self._announced()
                if heard:  # the IDLE goes on: mail, a keep-alive, a flag change
                    self._watch()
                    return
                # Renewal, or woken without a whole line (the server may have closed
                # the connection): ending IDLE tells; then it begins again.
                self.waiting.clear()
                if self._box.idle_end():
                    self._announced()
                self._failures = 0
            except Exception as exc:
                self._failed(exc)
                return
        self.begin()

    def _failed(self, exc: Exception) -> None:
        self.waiting.clear()
        self._close()
        if self._over():
            return
        if self._since and time.monotonic() - self._since > STEADY_SECONDS:
            # It had worked for a while (a NAT or server that drops quiet connections
            # every few minutes): a first failure again, not one more in a row.
            self._failures = 0
        self._since = 0.0
        self._failures += 1
        delay = jittered(backoff(self._failures, RETRY_CAP_SECONDS))
        self.log.warning("push: %s; polling meanwhile, retrying IDLE in %.0f s", exc, delay)
        when = datetime.now(self.settings.tz) + timedelta(seconds=delay)
        with suppress(SchedulerNotRunningError):
            self._hub.scheduler.add_job(
                self.begin,
                "date",
                run_date=when,
                id=self._job_id,
                replace_existing=True,
                misfire_grace_time=None,
            )

    def _close(self) -> None:
        if self._box is not None:
            self._box.logout()
            self._box = None

    def stop(self) -> None:
        """Stop watching (at once), then end IDLE and log out."""
        self._stopped = True
        box: Any = self._box
        if box is not None:
            with suppress(Exception):
                self._hub.watcher.forget(box.socket())
        with self._lock:
            if self._box is not None:
                with suppress(Exception):
                    self._box.idle_end()
                self._close()
            self.waiting.clear()
