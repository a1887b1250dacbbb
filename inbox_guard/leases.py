"""Sharing practitioners between ``run`` processes (``[state] url``, PostgreSQL).

Every worker (a ``run`` process, on this machine or another) holds a slot: an
advisory lock on a session of its own, so the live workers can be counted and a dead
one's slot is freed with its session. Twice every ``state.lease_seconds``, each
worker serves its share, the practitioners divided by the live workers, rounded
up: it lets go of any beyond its share and takes free ones up to it. A practitioner
is taken by opening their state, which holds their lock (see
:mod:`inbox_guard.pgstate`), so two workers never serve one practitioner, and a dead
worker's practitioners are taken over at the others' next round. There is no
coordinator of our own: PostgreSQL is the engine.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.interval import IntervalTrigger

from .errors import BusyError, InboxGuardError
from .hub import Hub
from .model import Settings
from .pgstate import Slots
from .service import Service

log = logging.getLogger("inbox_guard.service")


class Leases:
    def __init__(
        self,
        practices: list[Settings],
        hub: Hub,
        make: Callable[[Settings], Service],
    ) -> None:
        self.practices = practices
        self.hub = hub
        self.make = make
        self.every = practices[0].main.state.lease_seconds
        self.running: dict[str, Service] = {}
        self._lock = threading.Lock()
        self._slots: Slots | None = None

    def start(self) -> None:
        url = self.practices[0].main.state.url
        try:
            self._slots = Slots(url)
        except Exception as exc:
            raise InboxGuardError(f"state.url: cannot take a worker slot: {exc}") from exc
        log.info("worker slot %d; sharing %d practitioners", self._slots.slot, len(self.practices))
        self.hub.scheduler.add_job(
            self.round,
            # Twice a lease period, so a dead worker's share is taken within one.
            IntervalTrigger(seconds=self.every / 2, jitter=self.every / 10),
            id="leases",
            max_instances=1,
            coalesce=True,
            # Soon, not at once: workers started together see each other first.
            next_run_time=datetime.now(UTC) + timedelta(seconds=random.uniform(0.5, 1.5)),
        )

    def round(self) -> None:
        """Let go of practitioners beyond this worker's share; take free ones up to it."""
        with self._lock:
            if self.hub.stopping.is_set() or self._slots is None:
                return
            try:
                live = self._slots.live()
            except Exception as exc:  # the database is away: the next round tries again
                log.warning("leases: cannot count the workers: %s", exc)
                with suppress(Exception):
                    self._slots.close()
                return
            for name in [n for n, s in self.running.items() if s.closed.is_set()]:
                del self.running[name]  # let go after losing its lock (and its jobs)
            share = math.ceil(len(self.practices) / live)
            for name in sorted(self.running)[share:]:
                log.info("[%s] leases: letting go (%d workers share the practice)", name, live)
                self.running.pop(name).stop()
            free = [p for p in self.practices if p.name not in self.running]
            random.shuffle(free)
            # Taken several at a time (each is a few round trips to the database), so
            # a dead worker's share is taken over in about one round.
            while (need := share - len(self.running)) > 0 and free:
                batch, free = free[:need], free[need:]
                try:
                    taking = [self.hub.pool.submit(self._take, s) for s in batch]
                except RuntimeError:  # shutting down
                    return
                for settings, future in zip(batch, taking, strict=True):
                    service = future.result()
                    if service is not None:
                        self.running[settings.name] = service

    def _take(self, settings: Settings) -> Service | None:
        """The practitioner's service, started, if this worker could take them."""
        if self.hub.stopping.is_set():
            return None
        service = self.make(settings)
        try:
            service.start()
        except BusyError:  # another worker serves them
            service.close(quietly=True)
            return None
        except Exception as exc:  # not ours to expect: one line, and the next round
            why = exc if isinstance(exc, InboxGuardError) else f"{type(exc).__name__}: {exc}"
            log.error("[%s] cannot serve: %s", settings.name, why)
            service.close(quietly=True)
            return None
        log.info("[%s] leases: serving", settings.name)
        return service

    def services(self) -> list[Service]:
        with self._lock:
            return list(self.running.values())

    def close(self) -> None:
        if self._slots is not None:
            self._slots.close()
