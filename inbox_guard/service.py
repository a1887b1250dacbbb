"""``inbox-guard run``: the background service.

APScheduler fires a triage pass at start-up and every ``poll_minutes``, and the digest
at ``digest.at`` on ``digest.days`` (cron in the practice's zone, so 07:30 stays 07:30
across daylight saving). One lock keeps passes and digests from overlapping. A lost
connection, a server restart or a refused login is logged and retried with capped
exponential backoff; the service itself never dies of it. SIGTERM/SIGINT stop it: the
running pass stops between messages (each message's bookkeeping is whole, and what is
left is finished by the next pass) and the process exits 0.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from . import outgoing
from .brief import run_briefs
from .credentials import login_secret
from .digest import run_digest
from .errors import ConnectError, InboxGuardError, SignInNeeded, StoreError
from .ics import with_calendar
from .mailbox import Mailbox
from .model import Problem, Settings
from .records import MAX_PROBLEMS
from .store import Store
from .timing import IDLE_SECONDS, backoff, digest_trigger
from .triage import run_pass

log = logging.getLogger(__name__)


class _Account(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes each line with the account when one service runs several."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        name = self.extra.get("account") if self.extra else None
        return (f"[{name}] {msg}" if name else msg), kwargs


class Service:
    def __init__(self, settings: Settings, name: str = "") -> None:
        self.settings = settings
        self.log = _Account(log, {"account": name})
        self.stopping = threading.Event()
        self._passed = threading.Event()  # a pass has run: the store knows what came in
        self.done: queue.Queue[tuple[str, bool]] = queue.Queue()  # (job, ok), for watchers
        self._lock = threading.Lock()
        self._mailbox: Mailbox | None = None
        self._store: Store | None = None
        self._failures = {"triage": 0, "digest": 0}
        # Trouble since the last digest that the state store could not keep.
        self._problems: dict[str, Problem] = {}
        self.scheduler = BackgroundScheduler(timezone=settings.tz)
        self._watcher = threading.Thread(target=self._watch, name="idle", daemon=True)
        self._idle: Mailbox | None = None  # the watcher's own connection
        self._secret = login_secret(settings)  # asked at each login, kept current
        # auth = "oauth2" and the sign-in has expired: the kept record's fingerprint
        # then, watched so the service tries again as soon as `login` replaces it.
        self._signin_gone: str | None = None

    # -- jobs --------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.now(UTC).astimezone(self.settings.tz)

    def _connect(self) -> Mailbox:
        if self._mailbox is None:
            account = self.settings.main.account
            self._mailbox = Mailbox.connect(account, self._secret)
            self.log.info("connected to %s:%s", account.host, account.effective_port)
        return self._mailbox

    def _drop_connection(self) -> None:
        if self._mailbox is not None:
            self._mailbox.logout()
            self._mailbox = None

    def _store_open(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.settings.state_path)
        return self._store

    def _guarded(self, job: str, work: Any) -> None:
        """Run ``work`` under the lock; on failure log one line and retry with backoff."""
        with self._lock:
            if self.stopping.is_set():
                return
            try:
                work()
            except Exception as exc:
                if isinstance(exc, InboxGuardError):
                    why = str(exc)
                else:
                    # Not ours to expect, so not a reason to stop serving: one line,
                    # the traceback at debug level, and a retry like any failure.
                    why = f"internal error: {type(exc).__name__}: {exc}"
                    self.log.debug("%s failed", job, exc_info=True)
                if isinstance(exc, ConnectError) or not isinstance(exc, InboxGuardError):
                    self._drop_connection()
                self._failures[job] += 1
                cap = self.settings.main.triage.poll_minutes * 60.0
                delay = backoff(self._failures[job], cap if job == "triage" else 3600.0)
                self.log.error("%s failed: %s; retrying in %.0f s", job, why, delay)
                self._note_problem(f"{job}: {why}")
                if isinstance(exc, SignInNeeded):
                    self._signin_lost(why)
                self._retry(job, delay)
                self.done.put((job, False))
                return
            self._failures[job] = 0
            if self._signin_gone is not None and job == "triage":
                self._signin_gone = None
                with suppress(JobLookupError):
                    self.scheduler.remove_job("signin-watch")
            self.done.put((job, True))

    # -- an expired sign-in (auth = "oauth2") ---------------------------------------

    def _signin_lost(self, why: str) -> None:
        """Tell the practitioner once, by the digest's route where that route does not
        need the lost sign-in itself, and watch for a new ``login``."""
        if self._signin_gone is not None or self.stopping.is_set():
            return
        from .tokens import TokenStore

        store = TokenStore(self.settings)
        self._signin_gone = store.fingerprint()
        self.scheduler.add_job(
            self._signin_watch,
            "interval",
            seconds=2,
            id="signin-watch",
            replace_existing=True,
            args=[store],
        )
        outgoing.signin_alert(self.settings, why, self._signin_gone, self._now(), self.log)

    def _signin_watch(self, store: Any) -> None:
        if self._signin_gone is None or store.fingerprint() == self._signin_gone:
            return
        self.log.info("a new sign-in was kept: trying again now")
        self._signin_gone = None
        with suppress(JobLookupError):
            self.scheduler.remove_job("signin-watch")
        self._failures["triage"] = 0
        self._due_now()

    def _note_problem(self, what: str) -> None:
        """Keep ``what`` for the next digest: in the state store, so a restart does not
        lose it; in memory only when the store itself is the trouble."""
        now = self._now()
        try:
            self._store_open().note_problem(what, now)
            return
        except StoreError:
            pass
        old = self._problems.get(what)
        if old is not None:
            self._problems[what] = Problem(what, old.first, now, old.times + 1)
        elif len(self._problems) < MAX_PROBLEMS:
            self._problems[what] = Problem(what, now, now, 1)

    def problems(self) -> list[Problem]:
        """For the digest: each distinct failure not yet reported, when it began and how
        often (the store's and the ones only in memory)."""
        kept: list[Problem] = []
        with suppress(StoreError):
            kept = self._store_open().problems()
        return [*kept, *self._problems.values()]

    def _retry(self, job: str, delay: float) -> None:
        if self.stopping.is_set():
            # stop() is waiting to shut the scheduler down: touching it now would
            # deadlock (the shutdown waits for this job while holding the job store).
            return
        when = datetime.now(self.settings.tz) + timedelta(seconds=delay)
        if job == "triage":
            self.scheduler.modify_job("triage", next_run_time=when)
        else:
            self.scheduler.add_job(
                self.digest,
                "date",
                run_date=when,
                id="digest-retry",
                replace_existing=True,
            )

    def _with_calendar(self, now: datetime) -> Settings:
        return with_calendar(self.settings, now, note=self._note_problem)

    def triage(self) -> None:
        def work() -> None:
            now = self._now()
            settings = self._with_calendar(now)
            try:
                result = run_pass(
                    settings, self._connect(), self._store_open(), now, stop=self.stopping
                )
            except ConnectError:
                # A kept connection may have been closed by the server while idle:
                # reconnect once before calling it a failure.
                self._drop_connection()
                result = run_pass(
                    settings, self._connect(), self._store_open(), now, stop=self.stopping
                )
            self._passed.set()
            self.log.info(
                "pass: scanned %d, flagged %d, ignored %d, errors %d",
                result.scanned,
                len(result.flagged),
                len(result.ignored),
                len(result.errors),
            )

        self._guarded("triage", work)

    def digest(self) -> None:
        def work() -> None:
            if self.settings.main.digest.deliver == "imap":
                mailbox: Mailbox | None = self._connect()
            else:  # only to see which holding replies are still in Drafts
                try:
                    mailbox = self._connect()
                except InboxGuardError as exc:
                    self.log.warning("digest: cannot look in Drafts: %s", exc)
                    mailbox = None
            now = self._now()
            run = run_digest(
                self._with_calendar(now),
                mailbox,
                self._store_open(),
                now,
                False,
                problems=list(self._problems.values()),
            )
            if run.delivered:
                self._problems.clear()
            if run.delivered:
                self.log.info("digest delivered: %d contacts", run.digest.count)
            else:
                self.log.info("digest: nothing to report")

        self._guarded("digest", work)

    def briefs(self) -> None:
        """The pre-session briefs due since the last look (every minute)."""

        def work() -> None:
            if not self._passed.is_set():
                return  # mail that came in while the service was down is not known yet
            now = self._now()
            run = run_briefs(self._with_calendar(now), self._connect, self._store_open(), now)
            for b, what in [(b, "sent") for b, _ in run.sent] + [
                (b, "skipped") for b in run.skipped
            ]:
                self.log.info("brief %s: %s, session %s", what, b.client, f"{b.session:%a %H:%M}")

        self._guarded("briefs", work)

    def _watch(self) -> None:
        """Push: a second connection IDLEs on the inbox and makes the pass due at once
        when mail arrives. Polling goes on regardless, so a server without IDLE, or a
        dropped IDLE connection, only costs speed; the watcher reconnects with backoff."""
        try:
            self._watch_loop()
        finally:
            if self._idle is not None:
                self._idle.logout()
                self._idle = None

    def _watch_loop(self) -> None:
        account = self.settings.main.account
        failures = 0
        while not self.stopping.is_set():
            try:
                if self._idle is None:
                    self._idle = Mailbox.connect(account, self._secret)
                    if b"IDLE" not in self._idle.capabilities():
                        self.log.info(
                            "the server has no IDLE: polling every %d min",
                            self.settings.main.triage.poll_minutes,
                        )
                        return
                    self.log.info("push: waiting for new mail with IDLE")
                    if failures:
                        # Mail that came while the watcher was away was not announced:
                        # catch up now rather than at the next poll.
                        self._due_now()
                if self._idle.wait_for_news(account.inbox, IDLE_SECONDS, self.stopping):
                    self.log.info("push: new mail announced")
                    self._due_now()
                failures = 0
            except Exception as exc:  # the watcher only ever costs speed, never the service
                if self._idle is not None:
                    self._idle.logout()
                    self._idle = None
                failures += 1
                delay = backoff(failures, 300.0)
                self.log.warning("push: %s; polling meanwhile, retrying IDLE in %.0f s", exc, delay)
                self.stopping.wait(delay)

    def _due_now(self) -> None:
        """Make the pass due now (unless the service is stopping)."""
        if self.stopping.is_set():
            return
        with suppress(JobLookupError, SchedulerNotRunningError):  # shutting down meanwhile
            self.scheduler.modify_job("triage", next_run_time=datetime.now(self.settings.tz))

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Take the state file (and its lock: one worker per state file, for as long as
        the service runs), then start the schedule."""
        self._store_open()
        minutes = self.settings.main.triage.poll_minutes
        now = datetime.now(self.settings.tz)
        tz = self.settings.tz
        jobs: list[tuple[Any, Any, datetime | None, float | None]] = [
            (self.triage, IntervalTrigger(minutes=minutes, timezone=tz), now, None),
            (self.digest, digest_trigger(self.settings), None, 3600),
        ]
        if self.settings.main.brief.enabled:
            jobs.append((self.briefs, IntervalTrigger(minutes=1, timezone=tz), now, None))
        for job, trigger, first, grace in jobs:
            self.scheduler.add_job(
                job,
                trigger,
                id=job.__name__,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=grace,
                **({"next_run_time": first} if first else {}),
            )
        self.scheduler.start()
        if self.settings.main.triage.push:
            self._watcher.start()
        nxt = self.scheduler.get_job("digest").next_run_time
        self.log.info(
            "running: a pass every %d min; next digest %s", minutes, f"{nxt:%a %d %b %H:%M}"
        )

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:  # a running pass or digest ends first, and sees `stopping`
            pass
        self.scheduler.shutdown(wait=True)
        if self._watcher.is_alive():
            self._watcher.join(timeout=10)
        with self._lock:
            self._drop_connection()
            if self._store is not None:
                self._store.close()
                self._store = None
        self.log.info("stopped")


def run_forever(services: list[Service]) -> None:
    """Run every service (one per practitioner) until SIGTERM or SIGINT; then stop
    them all cleanly. Each has its own scheduler, connections and state, so one slow or
    failing server delays only its own account."""
    wake = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started: list[Service] = []
    try:
        for service in services:
            service.start()
            started.append(service)
    except BaseException:
        for service in started:
            service.stop()
        raise
    wake.wait()
    for service in services:
        service.stopping.set()
    for service in services:
        service.stop()
