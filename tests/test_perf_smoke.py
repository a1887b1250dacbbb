"""Performance smoke test (N = 2000): a quiet pass costs a handful of commands, and no
pass ever downloads a message body. The full benchmark is benchmarks/bench.py."""

from __future__ import annotations

import contextlib
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from inbox_guard import config
from inbox_guard.cli import main
from inbox_guard.mailbox import Mailbox
from inbox_guard.store import Store
from inbox_guard.triage import run_pass

from .conftest import PASSWORD_ENV, Account, Practice, write_practice
from .dovecot import Dovecot
from .faults import CutProxy
from .mailgen import CLIENTS, fill

# A body is downloaded by BODY[], BODY.PEEK[], BODY[TEXT], RFC822 or RFC822.TEXT; the
# only body reads allowed are partial (<0.65536>) text windows for the risk screen.
WHOLE_BODY = re.compile(
    rb"(BODY(\.PEEK)?\[(TEXT|\d+(\.\d+)*)?\](?!<0\.65536>)|RFC822(?!\.SIZE|\.HEADER))",
    re.IGNORECASE,
)


def once(p: Practice) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--config", str(p.config), "once", "--json"]) == 0
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def kept_connection_polls(p: Practice, proxy: CutProxy) -> list[bytes]:
    """The commands of the second of two passes on one connection (as `run` polls)."""
    settings = config.load(p.config)
    mailbox = Mailbox.connect(settings.main.account, p.account.password)
    store = Store.open(settings.state_path)
    try:
        run_pass(settings, mailbox, store, datetime.now(UTC))
        mailbox.open(settings.main.account.inbox, read_only=False)  # as a pass with work leaves it
        proxy.reset_counts()
        result = run_pass(settings, mailbox, store, datetime.now(UTC))
        assert result.scanned == 0
        return list(proxy.commands)
    finally:
        store.close()
        mailbox.logout()


def test_quiet_pass_costs_a_few_commands_and_no_pass_reads_bodies(
    dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = dovecot.user("perf-smoke")
    account = Account(dovecot, user, password)
    filled = fill(dovecot.maildir(user), 2000, seed=7, now=datetime.now(UTC))
    monkeypatch.setenv(PASSWORD_ENV, password)
    p = write_practice(tmp_path, account, lookback=365 * 4)
    for i, c in enumerate(CLIENTS):
        (p.config.parent / "clients" / f"bench{i:02d}.toml").write_text(
            f'name = "B{i}"\nemails = ["{c}"]\n'
        )
    with CutProxy(dovecot.port) as proxy:
        p.config.write_text(
            p.config.read_text().replace(f"port = {dovecot.port}", f"port = {proxy.port}")
        )
        first = once(p)
        first_commands = list(proxy.commands)
        proxy.reset_counts()
        quiet = once(p)
        quiet_commands = list(proxy.commands)
        poll_commands = kept_connection_polls(p, proxy)

    assert first["scanned"] == filled.from_clients
    assert len(first["flagged"]) > 0
    assert quiet == {"scanned": 0, "flagged": [], "ignored": [], "errors": []}
    names = [c.split(b" ")[1].upper() for c in quiet_commands]
    # imaplib asks CAPABILITY on connecting; then log in, STATUS (its UIDNEXT shows
    # nothing is new: no SELECT, no SEARCH, no FETCH), log out: 4, the target's ceiling.
    assert names == [b"CAPABILITY", b"LOGIN", b"STATUS", b"LOGOUT"], quiet_commands
    # Inside `run`, on a kept connection, a quiet poll is a single command.
    assert [c.split(b" ", 1)[1] for c in poll_commands] == [b"NOOP"]
    body_reads = [c for c in first_commands + quiet_commands if WHOLE_BODY.search(c)]
    assert body_reads == []
