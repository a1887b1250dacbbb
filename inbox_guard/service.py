"""``inbox-guard run``: the background service, one :class:`Service` per practitioner,
all sharing one :class:`~inbox_guard.hub.Hub` (scheduler, workers, login pacing, the
IDLE watcher).

The hub's scheduler fires a triage pass at start-up and every ``poll_minutes``, and the
digest at ``digest.at`` on ``digest.days`` (cron in the practice's zone, so 07:30 stays
07:30 across daylight saving). One lock per practitioner keeps passes and digests from
overlapping. A lost connection, a server restart or a refused login is logged and
retried with capped, jittered exponential backoff; the service itself never dies of it.
SIGTERM/SIGINT stop it: the running pass stops between messages (each message's
bookkeeping is whole, and what is left is finished by the next pass) and the process
exits 0.
"""

from __future__ import annotations

import logging
import queue
import threading
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.triggers.interval import IntervalTrigger

from . import outgoing
from .brief import run_briefs
from .credentials import login_secret
from .digest import run_digest
from .errors import BusyError, ConnectError, InboxGuardError, SignInNeeded, StoreError
from .hub import Hub, jittered
from .ics import with_calendar
from .mailbox import Mailbox
from .model import Problem, Settings
from .push import Push
from .records import MAX_PROBLEMS
from .store import HeldStore
from .timing import backoff, digest_trigger
from .triage import run_pass

log = logging.getLogger(__name__)


class _Account(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes each line with the account when one service runs several."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        name = self.extra.get("account") if self.extra else None
        return (f"[{name}] {msg}" if name else msg), kwargs


class Service:
    """One practitioner's jobs. With no ``hub``, the service has one of its own."""

    def __init__(self, settings: Settings, name: str = "", hub: Hub | None = None) -> None:
        self.settings = settings
        self.name = name
        self.log = _Account(log, {"account": name})
        self._own_hub = hub is None
        self.hub = hub if hub is not None else Hub()
        self.stopping = threading.Event()
        self.closed = threading.Event()  # stopped, its jobs gone and its state let go
        self._passed = threading.Event()  # a pass has run: the store knows what came in
        # (job, ok) of the latest jobs, for tests and watchers; the oldest are dropped.
        self.done: queue.Queue[tuple[str, bool]] = queue.Queue(maxsize=100)
        self._lock = threading.Lock()
        self._mailbox: Mailbox | None = None
        self.state = HeldStore(settings)
        self._failures = {"triage": 0, "digest": 0}
        # Trouble since the last digest that the state store could not keep.
        self._problems: dict[str, Problem] = {}
        self._secret = login_secret(settings)  # asked at each login, kept current
        self.push = Push(
            settings,
            self._secret,
            self.hub,
            self.job_id("push"),
            self._due_now,
            self.stopping,
            self.log,
        )
        self._push_started = False
        # auth = "oauth2" and the sign-in has expired: the kept record's fingerprint
        # then, watched so the service tries again as soon as `login` replaces it.
        self._signin_gone: str | None = None

    @property
    def scheduler(self) -> Any:
        return self.hub.scheduler

    def job_id(self, job: str) -> str:
        """The scheduler's id for this practitioner's ``job`` (the hub is shared)."""
        return f"{job}@{self.name}" if self.name else job

    def _finished(self, job: str, ok: bool) -> None:
        with suppress(queue.Full, queue.Empty):
            if self.done.full():
                self.done.get_nowait()  # the oldest goes: nobody may be reading
            self.done.put_nowait((job, ok))

    # -- jobs --------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.now(UTC).astimezone(self.settings.tz)

    def _connect(self) -> Mailbox:
        if self._mailbox is None:
            account = self.settings.main.account
            with self.hub.pacer.login():
                self._mailbox = Mailbox.connect(account, self._secret)
            self.log.info("connected to %s:%s", account.host, account.effective_port)
        return self._mailbox

    def _drop_connection(self) -> None:
        if self._mailbox is not None:
            self._mailbox.logout()
            self._mailbox = None

    def _let_go(self) -> None:
        """Another worker serves this practitioner now (PostgreSQL): stop serving."""
        self.log.warning("another worker serves this practitioner now: letting go")
        self.stopping.set()
        self.hub.submit(self.stop)

    def _guarded(self, job: str, work: Any) -> None:
        """Run ``work`` under the lock; on failure log one line and retry with backoff."""
        with self._lock:
            if self.stopping.is_set():
                return
            try:
                work()
            except BusyError:
                if self.settings.main.state.url:
                    self._let_go()
                    return
                raise
            except Exception as exc:
                if isinstance(exc, StoreError) and self.settings.main.state.url:
                    # Its session may be gone, and the lock with it: take it again now,
                    # or let go at once if another worker has it.
                    self.state.drop()
                    with suppress(StoreError):
                        try:
                            self.state.open()
                        except BusyError:
                            self._let_go()
                            return
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
                delay = jittered(backoff(self._failures[job], cap if job == "triage" else 3600.0))
                self.log.error("%s failed: %s; retrying in %.0f s", job, why, delay)
                self._note_problem(f"{job}: {why}")
                if isinstance(exc, SignInNeeded):
                    self._signin_lost(why)
                self._retry(job, delay)
                self._finished(job, False)
                return
            finally:
                self.state.rest()
                if job == "triage":
                    self._start_push()
            self._failures[job] = 0
            if self._signin_gone is not None and job == "triage":
                self._signin_gone = None
                with suppress(JobLookupError):
                    self.scheduler.remove_job(self.job_id("signin-watch"))
            self._finished(job, True)

    def _start_push(self) -> None:
        """Push begins after the first pass (whatever its outcome): passes log in first."""
        if not self._push_started and self.settings.main.triage.push:
            self._push_started = True
            self.hub.submit(self.push.begin)

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
            id=self.job_id("signin-watch"),
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
            self.scheduler.remove_job(self.job_id("signin-watch"))
        self._failures["triage"] = 0
        self._due_now()

    def _note_problem(self, what: str) -> None:
        """Keep ``what`` for the next digest: in the state store, so a restart does not
        lose it; in memory only when the store itself is the trouble."""
        now = self._now()
        try:
            self.state.open().note_problem(what, now)
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
            kept = self.state.open().problems()
        return [*kept, *self._problems.values()]

    def _retry(self, job: str, delay: float) -> None:
        if self.stopping.is_set():
            # stop() is waiting to shut the scheduler down: touching it now would
            # deadlock (the shutdown waits for this job while holding the job store).
            return
        when = datetime.now(self.settings.tz) + timedelta(seconds=delay)
        if job == "triage":
            self.scheduler.modify_job(self.job_id("triage"), next_run_time=when)
        else:
            self.scheduler.add_job(
                self.digest,
                "date",
                run_date=when,
                id=self.job_id("digest-retry"),
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
                    settings, self._connect(), self.state.open(), now, stop=self.stopping
                )
            except ConnectError:
                if self.stopping.is_set():  # not another login's timeout
                    raise
                # A kept connection may have been closed by the server while idle:
                # reconnect once before calling it a failure.
                self._drop_connection()
                result = run_pass(
                    settings, self._connect(), self.state.open(), now, stop=self.stopping
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
                self.state.open(),
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
            run = run_briefs(self._with_calendar(now), self._connect, self.state.open(), now)
            for b, what in [(b, "sent") for b, _ in run.sent] + [
                (b, "skipped") for b in run.skipped
            ]:
                self.log.info("brief %s: %s, session %s", what, b.client, f"{b.session:%a %H:%M}")

        self._guarded("briefs", work)

    def _due_now(self) -> None:
        """Make the pass due now (unless the service is stopping)."""
        if self.stopping.is_set():
            return
        with suppress(JobLookupError, SchedulerNotRunningError):  # shutting down meanwhile
            self.scheduler.modify_job(
                self.job_id("triage"), next_run_time=datetime.now(self.settings.tz)
            )

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Take the state file (and its lock: one worker per state file, for as long as
        the service runs), then schedule the jobs."""
        self.state.open()
        self.state.rest()
        minutes = self.settings.main.triage.poll_minutes
        now = datetime.now(self.settings.tz)
        tz = self.settings.tz
        # Polls spread out a little, so many practitioners started together do not all
        # poll in the same second ever after.
        poll = IntervalTrigger(minutes=minutes, timezone=tz, jitter=min(60, minutes * 6))
        jobs: list[tuple[Any, Any, datetime | None, float | None]] = [
            (self.triage, poll, now, None),
            (self.digest, digest_trigger(self.settings), None, 3600),
        ]
        if self.settings.main.brief.enabled:
            jobs.append((self.briefs, IntervalTrigger(minutes=1, timezone=tz), now, None))
        for job, trigger, first, grace in jobs:
            self.scheduler.add_job(
                job,
                trigger,
                id=self.job_id(job.__name__),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=grace,
                **({"next_run_time": first} if first else {}),
            )
        if self._own_hub:
            self.hub.start()
        nxt = self.scheduler.get_job(self.job_id("digest")).next_run_time
        self.log.info(
            "running: a pass every %d min; next digest %s", minutes, f"{nxt:%a %d %b %H:%M}"
        )

    def stop(self) -> None:
        self.stopping.set()
        self.push.stop()
        with self._lock:  # a running pass or digest ends first, and sees `stopping`
            pass
        if self._own_hub:
            self.hub.stop()
        else:
            for job in ("triage", "digest", "briefs", "digest-retry", "signin-watch", "push"):
                with suppress(JobLookupError, SchedulerNotRunningError):
                    self.scheduler.remove_job(self.job_id(job))
        self.close()

    def busy(self) -> bool:  # one of its jobs is running now
        return self._lock.locked()

    def close(self, quietly: bool = False) -> None:
        """Log out and close the state file (once no job of this service runs)."""
        self.push.stop()
        with self._lock:
            self._drop_connection()
            self.state.release()
        self.closed.set()
        if not quietly:
            self.log.info("stopped")
