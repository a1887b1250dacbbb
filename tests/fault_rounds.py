"""Randomised fault rounds, shared by the test suite and ``benchmarks/stress.py``.

A round: a random synthetic mailbox; the same mailbox triaged once without faults
(the reference); and again with the connection cut at random points, or the worker
SIGKILLed at a chosen point of its progress, then allowed to finish. The faulty
mailbox must end exactly like the reference: the same flags on every message (so
exactly one keyword where due and unchanged flags elsewhere), the same drafts
(exactly one where due, none twice), the same agenda lines, the same message set.

Kills are triggered by progress seen on the wire, not by time: the worker talks
through the :class:`~tests.faults.CutProxy`, which holds the traffic at the point and
SIGKILLs the worker (see :data:`KILL_POINTS`). Nothing in the product is hooked.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any, Literal

from inbox_guard.cli import main

from .conftest import (
    JANE,
    PASSWORD_ENV,
    SAM,
    THERAPIST,
    Account,
    Practice,
    message,
    write_practice,
)
from .dovecot import Dovecot
from .faults import Cut, CutProxy, Trip
from .hostile_corpus import corpus

NOW = "2026-11-16T08:00:00+00:00"
COMMANDS = [
    b"SELECT",
    b"UID SEARCH",
    b"UID FETCH",
    b"UID STORE",
    b"APPEND",
    b"EXAMINE",
    b"LOGIN",
    b"LIST",
]
# Where a killed worker dies, as the proxy sees it (command, and where relative to it).
# The pass records its plan before the first STORE; then, risk first, the risk STORE
# and the alert (APPEND to INBOX), each recorded; then the keyword STORE, the notes,
# and the drafts: recorded as tried, looked up in Drafts, APPENDed (MULTIAPPEND for
# several), recorded done. (tests/test_wild_more.py kills after the draft APPEND of a
# pass whose first APPEND was an alert.)
KILL_POINTS: dict[str, tuple[bytes, Literal["sent", "answered", "next"]]] = {
    # after the plan is recorded: the first STORE is held, the server never sees it
    "plan": (b"UID STORE", "sent"),
    # between STORE and APPEND: the first STORE was done and heard; the client's next
    # command (the keyword STORE, a SEARCH, or the LIST that finds Drafts) is held
    "store": (b"UID STORE", "next"),
    # between APPEND and its record: the server has stored the draft (or the alert);
    # its OK is held, so the worker dies not knowing
    "append": (b"APPEND", "answered"),
}


@dataclass
class Tally:
    rounds: int = 0
    cuts: int = 0  # connections cut (cut rounds)
    kills: int = 0  # workers SIGKILLed at their point (kill rounds)
    passes: int = 0
    cut_passes: int = 0  # faulty passes that had their connection cut at least once
    points: Counter[str] = field(default_factory=Counter)  # kill rounds per chosen point
    reached: Counter[str] = field(default_factory=Counter)  # ... whose worker got there
    landed: Counter[str] = field(default_factory=Counter)  # "point: command" it died at
    hostile: int = 0  # hostile messages from a client's address in the rounds' mailboxes
    message_faults: int = 0  # errors reported by passes that were not cut or killed
    mismatches: list[str] = field(default_factory=list)

    @property
    def mid_pass(self) -> float:
        """The share of kill rounds whose worker was killed at its point."""
        return sum(self.reached.values()) / max(1, sum(self.points.values()))

    def kill_summary(self) -> str:
        per_point = ", ".join(
            f"{name} {self.reached[name]}/{self.points[name]}" for name in KILL_POINTS
        )
        landed = ", ".join(f"{k} {n}" for k, n in sorted(self.landed.items()))
        return (
            f"kill rounds {self.rounds}, kills {self.kills} ({per_point}; "
            f"{self.mid_pass:.0%} mid-pass), passes {self.passes}; held: {landed}"
        )

    def cut_summary(self) -> str:
        return (
            f"cut rounds {self.rounds}, cuts {self.cuts}, passes {self.passes} "
            f"({self.cut_passes} of them cut)"
        )

    def hostile_summary(self) -> str:
        return f"hostile messages {self.hostile}; errors in clean passes {self.message_faults}"


def scenario(rng: random.Random, due: bool = True) -> list[tuple[bytes, datetime]]:
    """3-9 synthetic messages: client mail in and out of hours, strangers, machines,
    and hostile mail forged from a client's address (tests/hostile_corpus.py).
    With ``due`` the first is out-of-hours client mail to the therapist, so the pass
    has a keyword to set, a note to write and a draft to make."""
    base = datetime(2026, 11, 13, 17, 30, tzinfo=UTC)  # Friday evening, out of hours
    out = []
    for i in range(rng.randint(3, 9)):
        kinds = [
            "jane",
            "jane",
            "sam",
            "in-hours",
            "stranger",
            "auto",
            "risk",
            "bcc",
            "hostile",
            "hostile",
        ]
        kind = "jane" if due and i == 0 else rng.choice(kinds)
        when = base + timedelta(minutes=rng.randint(0, 60 * 60))  # over the weekend
        mid = f"<r{rng.getrandbits(40):x}.{i}@example.org>"
        if kind == "in-hours":
            when = datetime(2026, 11, 13, 10, rng.randint(0, 59), tzinfo=UTC)
            raw = message(message_id=mid)
        elif kind == "sam":
            raw = message(sender=SAM, message_id=mid)
        elif kind == "stranger":
            raw = message(sender="someone@elsewhere.example", message_id=mid)
        elif kind == "auto":
            raw = message(message_id=mid, headers={"Auto-Submitted": "auto-replied"})
        elif kind == "risk":
            raw = message(message_id=mid, body="I want to end it all tonight\n")
        elif kind == "bcc":
            raw = message(to="list@example.net", message_id=mid)
        elif kind == "hostile":
            forged = corpus(rng.choice([JANE, SAM]), THERAPIST, tag=f"r{rng.getrandbits(40):x}")
            raw = forged[rng.choice(sorted(forged))]
        else:
            raw = message(subject=f"note {i}", message_id=mid)
        out.append((raw, when))
    return out


def fill(account: Account, mail: list[tuple[bytes, datetime]]) -> None:
    with account.client() as c:
        for raw, when in mail:
            c.append("INBOX", raw, msg_time=when)


def outcome(p: Practice) -> dict[str, Any]:
    """Everything a pass can change, keyed so two mailboxes can be compared."""

    def by_id(folder: str) -> dict[str, tuple[frozenset[bytes], bytes]]:
        out = {}
        for m in p.account.snapshot(folder).values():
            mid = str(message_from_bytes(m["bytes"])["Message-ID"])
            assert mid not in out, f"two messages with {mid} in {folder}"
            out[mid] = (frozenset(m["flags"]), m["bytes"])
        return out

    agendas = (
        {str(f.relative_to(p.agendas)): f.read_text() for f in sorted(p.agendas.rglob("*.md"))}
        if p.agendas.exists()
        else {}
    )
    return {"inbox": by_id("INBOX"), "drafts": by_id("Drafts"), "agendas": agendas}


def _once(p: Practice, tally: Tally | None = None) -> int:
    """One pass; with ``tally``, a pass that should meet no fault: its errors (a
    message it could not handle) are counted."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["--config", str(p.config), "once", "--json", "--now", NOW])
    if tally is not None and code == 0:
        tally.message_faults += len(json.loads(out.getvalue())["errors"])
    return code


def _hostile(mail: list[tuple[bytes, datetime]]) -> int:
    return sum(b"@hostile.example>" in raw for raw, _ in mail)


def _diff(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    for part in ("inbox", "drafts", "agendas"):
        e, a = expected[part], actual[part]
        if e.keys() != a.keys():
            return f"{part}: expected {sorted(e)} got {sorted(a)}"
        for k in e:
            if e[k] != a[k]:
                return f"{part}[{k}]: expected {e[k]!r:.300} got {a[k]!r:.300}"
    return ""


def _compare(expected: dict[str, Any], p: Practice) -> str:
    """What differs from the reference ("" for nothing), duplicates included."""
    try:
        return _diff(expected, outcome(p))
    except AssertionError as exc:  # a message twice in one folder
        return str(exc)


def new_practice(server: Dovecot, root: Path, port: int | None = None) -> Practice:
    user, password = server.user(f"f{random.getrandbits(48):x}")
    account = Account(server, user, password)
    os.environ[PASSWORD_ENV] = password
    p = write_practice(root, account)
    if port is not None:  # talk through the proxy
        text = p.config.read_text().replace(f"port = {server.port}", f"port = {port}")
        p.config.write_text(text)
    return p


def cut_round(
    server: Dovecot, proxy: CutProxy, root: Path, rng: random.Random, tally: Tally
) -> None:
    mail = scenario(rng)
    # The reference goes through the proxy too, uncut, to learn the size of a pass and
    # the commands it sends: the faults are drawn from those, so most land mid-pass.
    ref = new_practice(server, root / "ref", port=proxy.port)
    fill(ref.account, mail)
    proxy.set(Cut())
    proxy.reset_counts()
    assert _once(ref, tally) == 0
    tally.hostile += _hostile(mail)
    size = proxy.relayed
    sent = sorted(
        {
            c
            for c in COMMANDS
            for line in proxy.commands
            if line.split(b" ", 1)[1].upper().startswith(c)
        }
    )
    expected = outcome(ref)

    p = new_practice(server, root / "faulty", port=proxy.port)
    fill(p.account, mail)
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.5:
            proxy.set(Cut(after_bytes=rng.randint(1, size)))
        else:
            proxy.set(Cut(at_command=rng.choice(sent), forward_first=rng.random() < 0.6))
        before = proxy.cuts
        code = _once(p)
        tally.passes += 1
        tally.cuts += proxy.cuts - before
        tally.cut_passes += proxy.cuts > before
        assert code in (0, 1, 3), code
    proxy.set(Cut())
    assert _once(p, tally) == 0
    assert _once(p, tally) == 0  # and a pass after that is quiet and harmless
    tally.passes += 2
    tally.rounds += 1
    problem = _compare(expected, p)
    if problem:
        tally.mismatches.append(f"cut round {tally.rounds}: {problem}")


def _held(line: bytes) -> str:
    """The name of a tagged command (``UID STORE``), or the status of a tagged reply."""
    words = line.split(b" ")[1:3]
    return b" ".join(words if words[0].upper() == b"UID" else words[:1]).decode("ascii", "replace")


def _killer(
    worker: list[subprocess.Popen[bytes]], started: threading.Event
) -> Callable[[bytes], None]:
    """A trip hook: SIGKILL the worker and return once it is dead (not reaped)."""

    def kill(line: bytes) -> None:
        assert started.wait(60), "the worker was never started"
        pid = worker[0].pid
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # already reaped by the test
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)

    return kill


def kill_round(
    server: Dovecot,
    proxy: CutProxy,
    root: Path,
    rng: random.Random,
    tally: Tally,
    point: str | None = None,
) -> None:
    """A worker (its own process, talking through ``proxy``) is SIGKILLed at ``point``
    (one of :data:`KILL_POINTS`, else one at random); then a clean pass finishes."""
    point = point or rng.choice(sorted(KILL_POINTS))
    mail = scenario(rng)
    ref = new_practice(server, root / "ref")
    fill(ref.account, mail)
    assert _once(ref, tally) == 0
    tally.hostile += _hostile(mail)
    expected = outcome(ref)

    p = new_practice(server, root / "killed", port=proxy.port)
    fill(p.account, mail)
    cmd = [sys.executable, "-m", "inbox_guard", "--config", str(p.config), "once", "--now", NOW]
    worker: list[subprocess.Popen[bytes]] = []
    started = threading.Event()
    command, at = KILL_POINTS[point]
    proxy.set(Cut())
    proxy.arm(Trip(command, at, _killer(worker, started)))
    try:
        worker.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    finally:
        started.set()
    try:
        _, err = worker[0].communicate(timeout=120)  # a bound for a hung worker, not a wait
    finally:
        if worker[0].returncode is None:
            worker[0].kill()
            worker[0].wait()
    tripped = proxy.tripped
    proxy.arm(None)
    tally.passes += 1
    tally.points[point] += 1
    if tripped is not None:
        assert worker[0].returncode == -signal.SIGKILL, (point, worker[0].returncode, err)
        tally.reached[point] += 1
        tally.kills += 1
        tally.landed[f"{point}: {_held(tripped)}"] += 1
    else:  # the pass had no such step: it must have finished cleanly
        assert worker[0].returncode == 0, (point, worker[0].returncode, err)
    assert _once(p, tally) == 0
    assert _once(p, tally) == 0  # and a pass after that is quiet and harmless
    tally.passes += 2
    tally.rounds += 1
    problem = _compare(expected, p)
    if problem:
        tally.mismatches.append(f"kill round {tally.rounds} ({point}): {problem}")
