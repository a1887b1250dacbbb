#!/usr/bin/env python3
"""What `inbox-guard run` costs with N practitioners in one process (one group file,
push on) against one private Dovecot: time until every first pass is done and every
IDLE is under way, threads, connections, RSS, CPU over a quiet stretch, then a server
restart with every account connected (time until all are back, the busiest second of
logins), then SIGTERM to exit.

    python3 benchmarks/scale.py [--accounts 10,100,1000] [--seconds 30] [--baseline DIR]
                                [--shared 300] [--workers 3]

``--shared N``: N practitioners on one PostgreSQL served by ``--workers`` processes;
once all are served, one is SIGKILLed and a message arrives for every practitioner:
how soon the killed worker's share is taken over and every message marked, and how
many drafts were written twice or never (the exactly-once check, from the mailboxes).

``--baseline DIR`` measures another source tree (a checkout of an earlier commit) in the
same run, so the printed ratios hold on a shared, noisy machine. Needs Debian's
``dovecot-imapd``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.dovecot import Dovecot  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
# Enough Dovecot for a thousand practitioners with two connections each: imap
# processes that serve many clients each (by default each serves one, and at most
# 1024 run), and limits above the defaults.
DOVECOT_EXTRA = """
default_process_limit = 4000
default_client_limit = 20000
default_vsz_limit = 2G
service imap {
  service_count = 0
  client_limit = 50
}
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(fd).startswith("socket:")
    return count


def group_file(
    folder: Path,
    server: Dovecot,
    n: int,
    users: str = "bench",
    shared: tuple[str, ...] = (),
    client: str = "",
) -> Path:
    """A group file of ``n`` practitioners on ``server`` (mail users ``<users>0``...),
    with the ``shared`` lines written once at the top and ``client`` as each one's
    client file (none when empty)."""
    text = ['timezone = "Europe/London"', "[triage]", "poll_minutes = 60", *shared, ""]
    for i in range(n):
        user, password = server.user(f"{users}{i}")
        os.environ[f"BENCH_PW_{i}"] = password
        (folder / "clients" / f"p{i}").mkdir(parents=True)
        if client:
            (folder / "clients" / f"p{i}" / "jane-doe.toml").write_text(client)
        text += [
            "[[accounts]]",
            f'id = "p{i}"',
            # Each as Alex, whom the synthetic mail is to (a holding reply needs that).
            f'therapist = {{ name = "P{i}", email = "alex@example.org", emergency_text = "999" }}',
            f'account = {{ host = "127.0.0.1", port = {server.port}, security = "plain", '
            f'username = "{user}", password_env = "BENCH_PW_{i}" }}',
            "",
        ]
    path = folder / "group.toml"
    path.write_text("\n".join(text))
    return path


def accounts_in(log: Path, what: str, since: int = 0) -> set[str]:
    """The accounts whose log has a line with ``what`` after byte ``since``."""
    with log.open() as f:
        f.seek(since)
        text = f.read()
    return set(re.findall(rf"\[(p\d+)\] {re.escape(what)}", text))


def wait_until(check: object, proc: subprocess.Popen[bytes], log: Path, limit: float) -> float:
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        if proc.poll() is not None or time.monotonic() - started > limit:
            proc.kill()
            dovecot = log.parent.parent / "dovecot" / "dovecot.log"
            raise SystemExit(
                f"scale.py: `run` did not get there:\n{log.read_text()[-3000:]}\n"
                f"Dovecot:\n{dovecot.read_text()[-3000:] if dovecot.exists() else ''}"
            )
        time.sleep(0.1)
    return time.monotonic() - started


def logins_per_second(server: Dovecot, since: str) -> int:
    """The busiest second of logins in Dovecot's log after the line ``since``."""
    text = (server.root / "dovecot.log").read_text()
    text = text[text.rfind(since) :] if since in text else text
    stamps = re.findall(r"^(\w{3} \d\d \d\d:\d\d:\d\d) imap-login: Info: Login:", text, re.M)
    return max(Counter(stamps).values(), default=0)


def measure(tree: Path, config: Path, server: Dovecot, n: int, seconds: float) -> dict[str, float]:
    log = config.parent / f"run-{tree.name}.log"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inbox_guard", "--config", str(config), "run"],
            stderr=err,
            stdout=subprocess.DEVNULL,
            env=env,
            cwd=tree,  # `python -m` puts the working folder first on the path
        )
    r: dict[str, float] = {}
    r["first passes"] = wait_until(
        lambda: len(accounts_in(log, "pass: scanned")) >= n, proc, log, 600
    )
    r["settled"] = r["first passes"] + wait_until(
        lambda: len(accounts_in(log, "push: waiting")) >= n, proc, log, 600
    )
    time.sleep(3)  # the passes made due as IDLE began
    r["threads"] = status(proc.pid, "Threads")
    r["connections"] = sockets(proc.pid)
    r["rss"] = status(proc.pid, "VmRSS") / 1024
    before = cpu_seconds(proc.pid)
    time.sleep(seconds)
    r["cpu"] = cpu_seconds(proc.pid) - before

    # The server restarts with every account connected.
    mark = log.stat().st_size
    stamp = f"restart-{tree.name}-{n}-{time.time()}"
    with (server.root / "dovecot.log").open("a") as f:
        f.write(stamp + "\n")
    server.stop()
    server.start()
    r["back"] = wait_until(
        lambda: len(accounts_in(log, "push: waiting", mark)) >= n, proc, log, 600
    )
    r["logins/s"] = logins_per_second(server, stamp)
    r["threads after"] = status(proc.pid, "Threads")

    stop = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    r["sigterm"] = time.monotonic() - stop
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", default="10,100,1000")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--baseline", type=Path)
    parser.add_argument("--shared", default="300", help="accounts for the PostgreSQL run")
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    trees = [ROOT, *([args.baseline.resolve()] if args.baseline else [])]
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # as root, Dovecot reads the mail as the user "mail"
        server = Dovecot(Path(tmp) / "dovecot")
        server.write_config(extra=DOVECOT_EXTRA)
        with server:
            if args.shared:
                workers_on_postgres(Path(tmp), server, int(args.shared), args.workers)
            for n in (int(x) for x in args.accounts.split(",") if x):
                for tree in trees:
                    config = group_file(Path(tmp) / f"cfg-{n}-{tree.name}", server, n)
                    r = measure(tree, config, server, n, args.seconds)
                    print(
                        f"{n:>5} accounts {tree.name:>8}: first passes {r['first passes']:.1f} s, "
                        f"all in IDLE {r['settled']:.1f} s, {r['threads']:.0f} threads, "
                        f"{r['connections']:.0f} sockets, RSS {r['rss']:.0f} MB, idle CPU "
                        f"{r['cpu']:.2f} s per {args.seconds:.0f} s "
                        f"({100 * r['cpu'] / args.seconds:.2f} % of a core); server restart: "
                        f"all back in {r['back']:.1f} s, at most {r['logins/s']:.0f} logins "
                        f"in a second, {r['threads after']:.0f} threads; "
                        f"SIGTERM to exit {r['sigterm']:.2f} s",
                        flush=True,
                    )


# -- several workers on one PostgreSQL -------------------------------------------------

CLIENT = """name = "Jane Doe"
emails = ["jane@example.org"]
sessions = { rrule = "FREQ=WEEKLY;BYDAY=WE", start = "2026-09-02T10:00" }
"""


def shared_group(folder: Path, server: Dovecot, url: str, n: int) -> Path:
    """``n`` practitioners on one Dovecot, each with the client Jane, state in ``url``."""
    shared = (
        'drafts = "per-message"',
        "[hours]",
        'mon = ["09:00-17:00"]',
        "[state]",
        f'url = "{url}"',
        "lease_seconds = 5",
    )
    return group_file(folder, server, n, users="shared", shared=shared, client=CLIENT)


def serving(log: Path, taken: str = "pass: scanned") -> set[str]:
    """The practitioners a worker's log says it serves: by their first pass logged, or
    with ``taken = "leases: serving"`` as soon as it holds their lock."""
    held: set[str] = set()
    pattern = rf"\[(p\d+)\] ({re.escape(taken)}|leases: letting go|stopped)"
    for m in re.finditer(pattern, log.read_text()):
        (held.add if m.group(2) == taken else held.discard)(m.group(1))
    return held


def workers_on_postgres(tmp: Path, server: Dovecot, n: int, count: int) -> None:
    from email.message import EmailMessage

    from imapclient import IMAPClient

    from tests.postgres import Postgres

    with Postgres(tmp / "postgres", max_connections=n + 50) as pg:
        group = shared_group(tmp / "shared", server, pg.url, n)
        logs = [tmp / "shared" / f"w{k}.log" for k in range(count)]
        procs = []
        for log in logs:
            with log.open("w") as err:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "inbox_guard", "--config", str(group), "run"],
                        stderr=err,
                        stdout=subprocess.DEVNULL,
                        cwd=ROOT,
                    )
                )
        names = {f"p{i}" for i in range(n)}
        started = time.monotonic()
        while set().union(*(serving(log) for log in logs)) != names:
            time.sleep(0.2)
        all_served = time.monotonic() - started
        while max(len(serving(log)) for log in logs) > -(-n // count):
            time.sleep(0.2)
        shared = time.monotonic() - started
        shares = sorted(len(serving(log)) for log in logs)

        procs[0].kill()
        procs[0].wait()
        killed = time.monotonic()

        def deliver() -> None:
            for i in range(n):
                msg = EmailMessage()
                msg["From"] = "Jane Doe <jane@example.org>"
                msg["To"] = "alex@example.org"
                msg["Subject"] = f"late, for p{i}"
                msg["Message-ID"] = f"<late-{i}@example.org>"
                msg.set_content("Synthetic test mail.\n")
                with IMAPClient("127.0.0.1", port=server.port, ssl=False) as c:
                    c.login(f"shared{i}", server.password)
                    when = datetime(2026, 11, 15, 23, 40, tzinfo=UTC)
                    c.append("INBOX", msg.as_bytes(), msg_time=when)

        # The mail arrives while the others take over (its delivery takes seconds).
        delivering = threading.Thread(target=deliver)
        delivering.start()
        alive = logs[1:]
        while set().union(*(serving(log, "leases: serving") for log in alive)) != names:
            time.sleep(0.1)
        locked = time.monotonic() - killed
        while set().union(*(serving(log) for log in alive)) != names:
            time.sleep(0.1)
        taken_over = time.monotonic() - killed

        def marked() -> int:
            text = "".join(log.read_text() for log in alive)
            return len(set(re.findall(r"\[(p\d+)\] pass: scanned \d+, flagged [1-9]", text)))

        while marked() < n and time.monotonic() - killed < 300:
            time.sleep(0.2)
        all_marked = time.monotonic() - killed
        delivering.join()
        for proc in procs[1:]:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)

        duplicates = missed = 0
        for i in range(n):
            with IMAPClient("127.0.0.1", port=server.port, ssl=False) as c:
                c.login(f"shared{i}", server.password)
                c.select_folder("Drafts", readonly=True)
                drafts = len(c.search(["HEADER", "Subject", f"late, for p{i}"]))
                c.select_folder("INBOX", readonly=True)
                uids = c.search(["HEADER", "Message-ID", f"<late-{i}@example.org>"])
                flags = c.get_flags(uids)
            duplicates += max(0, drafts - 1)
            missed += sum(b"$OutOfHours" not in f for f in flags.values()) + (drafts == 0)
        print(
            f"{count} workers on PostgreSQL, {n} accounts: all served {all_served:.1f} s, "
            f"evenly {shared:.1f} s (shares {shares}); one SIGKILLed: its accounts held by "
            f"the others in {locked:.1f} s (lease_seconds = 5), each with a pass in "
            f"{taken_over:.1f} s, all {n} new messages marked in {all_marked:.1f} s; "
            f"{duplicates} duplicate drafts, {missed} missed marks or drafts",
            flush=True,
        )


if __name__ == "__main__":
    main()
