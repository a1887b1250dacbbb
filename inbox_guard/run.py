"""The ``inbox-guard run`` process: one hub (scheduler, workers, login pacing, the IDLE
watcher) and one service per practitioner on it, until SIGTERM or SIGINT."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import signal

from .errors import ConfigError
from .hub import LOGINS_AT_ONCE, Hub, workers_for
from .leases import Leases
from .model import Settings
from .service import Service

log = logging.getLogger("inbox_guard.service")


STOP_GRACE_SECONDS = 5.0  # Docker waits 10 s after SIGTERM before it SIGKILLs


def run_forever(services: list[Service], hub: Hub, leases: Leases | None = None) -> bool:
    """Run every service (one per practitioner, all on ``hub``), and with ``leases``
    the share of the practitioners in PostgreSQL this worker holds, until SIGTERM or
    SIGINT; then stop them all cleanly. Each service has its own connections and
    state, so one slow or failing server delays only its own practitioner (and holds
    at most the workers its own jobs run on). False when a job was still stuck (on a
    server that does not answer) after ``STOP_GRACE_SECONDS``: the process must then
    leave without it, which costs nothing (each message's bookkeeping is whole, and
    the next start finishes what is left)."""
    # Every thread started from here on leaves SIGTERM and SIGINT to this one, which
    # waits for them without waking up meanwhile.
    signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    hub.start()
    try:
        for service in services:
            service.start()
        if leases is not None:
            leases.start()
        signum = signal.sigwait(signals)
        log.info("received %s, stopping", signal.Signals(signum).name)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)  # a second one ends it at once
    finally:
        held = leases.services() if leases is not None else []
        for service in services + held:
            service.stopping.set()
        # Running jobs end first (they see their service stopping), unless stuck.
        clean = hub.stop(grace=STOP_GRACE_SECONDS)
        everyone = services + (leases.services() if leases is not None else [])
        if not clean:
            log.warning(
                "a job is still waiting on a server that does not answer: stopping "
                "without it (nothing is lost; the next start finishes its work)"
            )
            everyone = [s for s in everyone if not s.busy()]
        # Logging out of every account at once rather than one after another.
        if everyone:
            with concurrent.futures.ThreadPoolExecutor(min(16, len(everyone))) as closing:
                for _ in closing.map(Service.close, everyone):
                    pass
        if leases is not None:
            leases.close()
    return clean


def serve(
    practices: list[Settings], workers: int | None, logins_at_once: int | None, debug: bool
) -> None:
    """``inbox-guard run``: every practitioner's service on one hub, until a signal.
    Practitioners whose state is in PostgreSQL are shared with the other workers there."""
    if not debug:
        logging.getLogger("inbox_guard").setLevel(logging.INFO)
    hub = Hub(
        workers=workers or workers_for(len(practices)),
        logins_at_once=logins_at_once or LOGINS_AT_ONCE,
    )
    several = len(practices) > 1

    def make(s: Settings) -> Service:
        return Service(s, name=s.name if several else "", hub=hub)

    shared = [s for s in practices if s.main.state.url]
    urls = {s.main.state.url for s in shared}
    if len(urls) > 1:
        raise ConfigError("state.url: give every practitioner the same database")
    leases = Leases(shared, hub, make) if shared else None
    if not run_forever([make(s) for s in practices if not s.main.state.url], hub, leases):
        # A worker thread is stuck in a socket call: the interpreter would wait for it
        # at exit. Everything to be kept is kept; leave now.
        logging.shutdown()
        os._exit(0)
