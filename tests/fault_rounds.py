"""Randomised fault rounds, shared by the test suite and ``benchmarks/stress.py``.

A round: a random synthetic mailbox; the same mailbox triaged once without faults
(the reference); and again with the connection cut at random points or the worker
SIGKILLed at random moments, then allowed to finish. The faulty mailbox must end
exactly like the reference: the same flags on every message (so exactly one keyword
where due and unchanged flags elsewhere), the same drafts (exactly one where due,
none twice), the same agenda lines, the same message set.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

from inbox_guard.cli import main

from .conftest import PASSWORD_ENV, SAM, Account, Practice, message, write_practice
from .dovecot import Dovecot
from .faults import Cut, CutProxy

NOW = "2026-11-16T08:00:00+00:00"
COMMANDS = [b"SELECT", b"UID SEARCH", b"UID FETCH", b"UID STORE", b"APPEND", b"EXAMINE",
            b"LOGIN", b"LIST"]


@dataclass
class Tally:
    rounds: int = 0
    cuts: int = 0
    kills: int = 0
    passes: int = 0
    mismatches: list[str] = field(default_factory=list)


def scenario(rng: random.Random) -> list[tuple[bytes, datetime]]:
    """3-9 synthetic messages: client mail in and out of hours, strangers, machines."""
    base = datetime(2026, 11, 13, 17, 30, tzinfo=UTC)  # Friday evening, out of hours
    out = []
    for i in range(rng.randint(3, 9)):
        kind = rng.choice(["jane", "jane", "sam", "in-hours", "stranger", "auto", "risk", "bcc"])
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

    agendas = {
        str(f.relative_to(p.agendas)): f.read_text()
        for f in sorted(p.agendas.rglob("*.md"))
    } if p.agendas.exists() else {}
    return {"inbox": by_id("INBOX"), "drafts": by_id("Drafts"), "agendas": agendas}


def _once(p: Practice) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(["--config", str(p.config), "once", "--json", "--now", NOW])


def _diff(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    for part in ("inbox", "drafts", "agendas"):
        e, a = expected[part], actual[part]
        if e.keys() != a.keys():
            return f"{part}: expected {sorted(e)} got {sorted(a)}"
        for k in e:
            if e[k] != a[k]:
                return f"{part}[{k}]: expected {e[k]!r:.300} got {a[k]!r:.300}"
    return ""


def new_practice(server: Dovecot, root: Path, port: int | None = None) -> Practice:
    user, password = server.user(f"f{random.getrandbits(48):x}")
    account = Account(server, user, password)
    os.environ[PASSWORD_ENV] = password
    p = write_practice(root, account)
    if port is not None:  # talk through the proxy
        text = p.config.read_text().replace(f"port = {server.port}", f"port = {port}")
        p.config.write_text(text)
    return p


def cut_round(server: Dovecot, proxy: CutProxy, root: Path, rng: random.Random,
              tally: Tally) -> None:
    mail = scenario(rng)
    ref = new_practice(server, root / "ref")
    fill(ref.account, mail)
    assert _once(ref) == 0
    expected = outcome(ref)

    p = new_practice(server, root / "faulty", port=proxy.port)
    fill(p.account, mail)
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.5:
            proxy.set(Cut(after_bytes=rng.randint(1, 12_000)))
        else:
            proxy.set(Cut(at_command=rng.choice(COMMANDS), forward_first=rng.random() < 0.6))
        before = proxy.cuts
        code = _once(p)
        tally.passes += 1
        tally.cuts += proxy.cuts - before
        assert code in (0, 1, 3), code
    proxy.set(Cut())
    assert _once(p) == 0
    assert _once(p) == 0  # and a pass after that is quiet and harmless
    tally.passes += 2
    tally.rounds += 1
    problem = _diff(expected, outcome(p))
    if problem:
        tally.mismatches.append(f"cut round {tally.rounds}: {problem}")


def kill_round(server: Dovecot, root: Path, rng: random.Random, tally: Tally) -> None:
    mail = scenario(rng)
    ref = new_practice(server, root / "ref")
    fill(ref.account, mail)
    assert _once(ref) == 0
    expected = outcome(ref)

    p = new_practice(server, root / "killed")
    fill(p.account, mail)
    cmd = [sys.executable, "-m", "inbox_guard", "--config", str(p.config), "once", "--now", NOW]
    for _ in range(rng.randint(1, 3)):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.12, 0.32))  # a random moment within the pass (~0.25 s)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            tally.kills += 1
        proc.wait()
        tally.passes += 1
    assert _once(p) == 0
    tally.passes += 1
    tally.rounds += 1
    problem = _diff(expected, outcome(p))
    if problem:
        tally.mismatches.append(f"kill round {tally.rounds}: {problem}")
