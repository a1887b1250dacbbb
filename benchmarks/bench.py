#!/usr/bin/env python3
"""inbox-guard against real Dovecot, against imapfilter, and against a bare client.

    python3 benchmarks/bench.py [--sizes 1000,10000,100000] [--repeat 3]

Starts a private Dovecot, writes N synthetic messages per size straight into a
maildir (5% from 25 client addresses, 0.2% with a ~2 MB attachment, three years of
arrival times), warms Dovecot's index, and measures in this one run, so the ratios
hold on a noisy machine (whole-process wall time, median of --repeat):

1. the quiet pass (nothing new) at every N: wall, IMAP commands, bytes from the server
   (counted at a proxy socket), and one poll of `run` on a kept connection;
2. the first pass over the whole backlog (mark, agenda, state; drafts off) at the two
   largest N: messages per second;
3. the same job by imapfilter (its contain_from idiom, and one match_from query), by a
   minimal imapclient script that searches then fetches the candidates (the client
   floor), by one that fetches the headers of every message, and by `doveadm search`
   (the server floor); the ratios to inbox-guard;
4. peak RSS of the first pass, and the start-up time of `inbox-guard --help`.

Needs Debian's dovecot-imapd and imapfilter. All mail is synthetic.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.dovecot import Dovecot  # noqa: E402
from tests.faults import CutProxy  # noqa: E402
from tests.mailgen import CLIENTS, fill  # noqa: E402

PY = sys.executable
SINCE = date(2000, 1, 1)  # "the whole backlog"


def run_process(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in KiB, stdout) of one whole process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {err[-500:]}")
    return wall, usage.ru_maxrss, out


def median_of(repeat: int, before: Callable[[], None], measure: Callable[[], float]) -> float:
    times = []
    for _ in range(repeat):
        before()
        times.append(measure())
    return statistics.median(times)


class Practice:
    """A benchmark config: 25 clients, Mon-Fri 09:00-17:00, the whole backlog."""

    def __init__(self, root: Path, port: int, user: str, password: str) -> None:
        self.root = root
        self.user = user
        self.password = password
        (root / "clients").mkdir(parents=True, exist_ok=True)
        for i, c in enumerate(CLIENTS):
            (root / "clients" / f"client{i:02d}.toml").write_text(
                f'name = "Client {i}"\nemails = ["{c}"]\n'
                'sessions = { rrule = "FREQ=WEEKLY;BYDAY=WE", start = "2024-01-03T10:00" }\n'
            )
        self.config = root / "inbox-guard.toml"
        self.config.write_text(
            textwrap.dedent(f"""\
            timezone = "Europe/London"
            [therapist]
            name = "Alex Morgan"
            email = "alex@example.org"
            emergency_text = "In an emergency call 999."
            [account]
            host = "127.0.0.1"
            port = {port}
            security = "plain"
            username = "{user}"
            password_env = "BENCH_PASSWORD"
            [hours]
            mon = ["09:00-17:00"]
            tue = ["09:00-17:00"]
            wed = ["09:00-17:00"]
            thu = ["09:00-17:00"]
            fri = ["09:00-17:00"]
            [triage]
            drafts = "off"
            lookback_days = 3650
            """)
        )

    def reset(self, server: Dovecot) -> None:
        shutil.rmtree(self.root / "state", ignore_errors=True)
        shutil.rmtree(self.root / "agendas", ignore_errors=True)
        server.doveadm("flags", "remove", "-u", self.user, "$OutOfHours", "mailbox", "INBOX", "ALL")

    def once(self) -> tuple[float, int, dict[str, object]]:
        wall, rss, out = run_process(
            [PY, "-m", "inbox_guard", "--config", str(self.config), "once", "--json"],
            env={"BENCH_PASSWORD": self.password},
        )
        return wall, rss, json.loads(out)


FLOOR_SCRIPT = """
import sys
from imapclient import IMAPClient
port, user, pw, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
clients = sys.argv[5].split(",")
c = IMAPClient("127.0.0.1", port=port, ssl=False)
c.normalise_times = False
c.login(user, pw)
c.select_folder("INBOX")
if mode == "candidates":
    crit = ["SINCE", "01-Jan-2000"]
    for i, a in enumerate(clients):
        crit += (["OR"] if i < len(clients) - 1 else []) + ["FROM", a]
    uids = c.search(crit)
else:
    uids = c.search(["ALL"])
hits = []
for i in range(0, len(uids), 5000):
    batch = uids[i:i + 5000]
    spec = ",".join(map(str, batch))
    data = c._raw_command_untagged(b"FETCH", [spec.encode(),
        b"(INTERNALDATE BODY.PEEK[HEADER.FIELDS (FROM DATE)])"], uid=True)
    hits += [1 for d in data if any(a.encode() in (d[1] if isinstance(d, tuple) else d) for a in clients)]
if mode == "candidates" and uids:
    c.add_flags(uids, ["$OutOfHours"], silent=True)
c.logout()
print(len(uids), len(hits))
"""


def imapfilter_config(port: int, user: str, pw: str, idiom: bool) -> str:
    acct = (
        f"account = IMAP {{ server = '127.0.0.1', port = {port}, username = '{user}', "
        f"password = '{pw}' }}\n"
    )
    since = "account.INBOX:arrived_since('01-Jan-2000')"
    if idiom:  # the documented way: one contain_from per client, united
        parts = " + ".join(f"account.INBOX:contain_from('{c}')" for c in CLIENTS)
        body = f"results = {since} * ({parts})\n"
    else:  # one SEARCH like inbox-guard's, then imapfilter's per-message From check
        query = "SINCE 01-Jan-2000 " + " ".join(
            (f"OR FROM {c}" if i < len(CLIENTS) - 1 else f"FROM {c}") for i, c in enumerate(CLIENTS)
        )
        alts = "|".join(c.replace(".", "\\\\.") for c in CLIENTS)
        body = (
            f"candidates = account.INBOX:send_query('{query}')\n"
            f"results = account.INBOX:match_from('.*({alts})', candidates)\n"
        )
    return (
        "options.timeout = 600\noptions.subscribe = false\n"
        + acct
        + body
        + "results:add_flags({'$OutOfHours'})\n"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    big = sizes[-2:] if len(sizes) > 1 else sizes
    figures: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "sizes": sizes,
        "repeat": args.repeat,
    }
    work = Path(tempfile.mkdtemp(prefix="ig-bench-"))
    work.chmod(0o755)

    startup = statistics.median(
        run_process([PY, "-m", "inbox_guard", "--help"])[0] for _ in range(5)
    )
    startup_script = statistics.median(
        run_process([shutil.which("inbox-guard") or "inbox-guard", "--help"])[0] for _ in range(5)
    )
    figures["help_startup_s"] = {
        "python -m": round(startup, 3),
        "console script": round(startup_script, 3),
    }
    print(
        f"inbox-guard --help start-up: {startup_script * 1000:.0f} ms "
        f"(python -m: {startup * 1000:.0f} ms)"
    )

    with Dovecot(work / "dovecot") as server, CutProxy(server.port) as proxy:
        for n in sizes:
            figures[str(n)] = bench_size(n, big, server, proxy, work, args.repeat)
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def bench_size(
    n: int, big: list[int], server: Dovecot, proxy: CutProxy, work: Path, repeat: int
) -> dict[str, object]:
    """Every figure for one mailbox size."""
    user, pw = server.user(f"bench{n}")
    t0 = time.perf_counter()
    filled = fill(server.maildir(user), n, seed=n)
    fill_s = time.perf_counter() - t0
    practice = Practice(work / f"p{n}", proxy.port, user, pw)
    # Warm Dovecot's index and header cache as a long-lived mailbox would be.
    t0 = time.perf_counter()
    run_process([PY, "-c", FLOOR_SCRIPT, str(server.port), user, pw, "all", ",".join(CLIENTS)])
    warm_s = time.perf_counter() - t0
    row: dict[str, object] = {
        "messages": filled.messages,
        "from_clients": filled.from_clients,
        "mailbox_mb": round(filled.bytes / 2**20),
        "fill_s": round(fill_s, 1),
        "warm_s": round(warm_s, 1),
    }
    print(
        f"\nN = {n}: {filled.bytes / 2**20:.0f} MB, {filled.from_clients} from clients "
        f"(filled in {fill_s:.1f} s, index warmed in {warm_s:.1f} s)"
    )

    # 2. First pass over the whole backlog.
    rss: list[int] = []
    stats: dict[str, object] = {}

    def first_pass(p: Practice = practice) -> float:
        proxy.reset_counts()
        wall, peak, result = p.once()
        rss.append(peak)
        stats.update(result=result, commands=len(proxy.commands), bytes=proxy.server_bytes)
        return wall

    first = median_of(repeat, lambda p=practice: p.reset(server), first_pass)
    result = stats["result"]
    assert isinstance(result, dict)
    row["first_pass"] = {
        "wall_s": round(first, 3),
        "msgs_per_s": round(n / first),
        "commands": stats["commands"],
        "server_bytes": stats["bytes"],
        "flagged": len(result["flagged"]),
        "peak_rss_mb": round(max(rss) / 1024, 1),
    }
    print(
        f"  first pass: {first:.2f} s ({n / first:,.0f} msg/s), {stats['commands']} commands, "
        f"{stats['bytes'] / 2**20:.1f} MB from server, {len(result['flagged'])} flagged, "
        f"peak RSS {max(rss) / 1024:.1f} MB"
    )

    # 1. Quiet pass, state kept from the first pass.
    quiet_stats: dict[str, object] = {}

    def quiet(p: Practice = practice) -> float:
        proxy.reset_counts()
        wall, _, result = p.once()
        assert result["scanned"] == 0, result
        quiet_stats.update(
            commands=len(proxy.commands),
            bytes=proxy.server_bytes,
            names=[c.split(b" ")[1].decode() for c in proxy.commands],
        )
        return wall

    q = median_of(repeat, lambda: None, quiet)
    poll = kept_connection_poll(practice, proxy)
    row["quiet_pass"] = {
        "wall_s": round(q, 3),
        "commands": quiet_stats["commands"],
        "command_names": quiet_stats["names"],
        "server_bytes": quiet_stats["bytes"],
        "run_poll": poll,
    }
    print(
        f"  quiet pass: {q * 1000:.0f} ms, {quiet_stats['commands']} commands "
        f"({' '.join(quiet_stats['names'])}), {quiet_stats['bytes']} bytes from server; "
        f"in `run`: {poll['commands']} command ({poll['names']}) and {poll['bytes']} bytes "
        f"per poll, {poll['ms']:.2f} ms"
    )

    # 3. The same job by other means.
    if n in big:
        others: dict[str, float] = {}
        flags_off = lambda p=practice: p.reset(server)  # noqa: E731
        others["client floor (search, fetch candidates, store)"] = median_of(
            repeat,
            flags_off,
            lambda: run_process(
                [
                    PY,
                    "-c",
                    FLOOR_SCRIPT,
                    str(server.port),
                    user,
                    pw,
                    "candidates",
                    ",".join(CLIENTS),
                ]
            )[0],
        )
        others["fetch From+Date of every message"] = median_of(
            repeat,
            lambda: None,
            lambda: run_process(
                [PY, "-c", FLOOR_SCRIPT, str(server.port), user, pw, "all", ",".join(CLIENTS)]
            )[0],
        )
        for idiom, name in (
            (True, "imapfilter, contain_from per client"),
            (False, "imapfilter, one query + match_from"),
        ):
            cfg = work / f"imapfilter-{n}-{idiom}.lua"
            cfg.write_text(imapfilter_config(server.port, user, pw, idiom))
            others[name] = median_of(
                repeat,
                flags_off,
                lambda cfg=cfg: run_process(
                    ["imapfilter", "-c", str(cfg)], env={"HOME": str(work)}
                )[0],
            )
        query = ["since", "2000-01-01", "("]  # doveadm writes OR between keys
        for i, c in enumerate(CLIENTS):
            query += (["OR"] if i else []) + ["from", c]
        query.append(")")
        others["doveadm search (server floor)"] = median_of(
            repeat,
            lambda: None,
            lambda: run_process(
                [
                    shutil.which("doveadm") or "doveadm",
                    "-c",
                    str(server.conf),
                    "search",
                    "-u",
                    user,
                    "mailbox",
                    "INBOX",
                    *query,
                ]
            )[0],
        )
        row["others_s"] = {k: round(v, 3) for k, v in others.items()}
        for name, secs in others.items():
            print(f"  {name}: {secs:.2f} s; inbox-guard / this = {first / secs:.2f}")
    return row


def kept_connection_poll(practice: Practice, proxy: CutProxy) -> dict[str, object]:
    """One poll of `run`: a pass on a connection kept from the previous pass."""
    from inbox_guard import config
    from inbox_guard.mailbox import Mailbox
    from inbox_guard.store import Store
    from inbox_guard.triage import run_pass

    os.environ["BENCH_PASSWORD"] = practice.password
    settings = config.load(practice.config)
    mailbox = Mailbox.connect(settings.main.account, practice.password)
    store = Store.open(settings.state_path)
    try:
        run_pass(settings, mailbox, store, datetime.now(UTC))  # the previous poll
        mailbox.open(settings.main.account.inbox, read_only=False)  # as a pass with work leaves it
        proxy.reset_counts()
        started = time.perf_counter()
        run_pass(settings, mailbox, store, datetime.now(UTC) + timedelta(minutes=5))
        ms = (time.perf_counter() - started) * 1000
        names = " ".join(c.split(b" ")[1].decode() for c in proxy.commands)
        return {
            "commands": len(proxy.commands),
            "names": names,
            "bytes": proxy.server_bytes,
            "ms": round(ms, 2),
        }
    finally:
        store.close()
        mailbox.logout()


if __name__ == "__main__":
    sys.exit(main())
