"""Exactly once under faults: cut connections and killed workers against real Dovecot.

Fixed, seeded round counts (no wall-clock budget), so what passes does not depend on
the machine's speed: about half a minute for each test on a 2-core machine.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from .dovecot import Dovecot
from .fault_rounds import KILL_POINTS, Tally, cut_round, kill_round
from .faults import CutProxy, Lines

CUT_ROUNDS = 28
KILL_ROUNDS = 6 * len(KILL_POINTS)  # each point as often, in a seeded order


def test_cut_connections_leave_the_mailbox_as_a_clean_run_would(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    rng = random.Random(20261122)
    tally = Tally()
    with CutProxy(dovecot.port) as proxy:
        for n in range(CUT_ROUNDS):
            root = tmp_path / f"r{n}"
            cut_round(dovecot, proxy, root, rng, tally)
            shutil.rmtree(root)
    print(tally.cut_summary(), tally.hostile_summary())
    assert tally.mismatches == [], "\n".join(tally.mismatches)
    assert tally.rounds == CUT_ROUNDS
    # Forged hostile mail was in the mailboxes, and no pass that met no fault
    # reported a message it could not handle.
    assert tally.hostile > 0 and tally.message_faults == 0, tally.hostile_summary()
    # Most faulty passes really lost their connection (the faults are drawn from the
    # reference pass, but a pass resuming after a cut is shorter than a whole one).
    faulty = tally.passes - 2 * CUT_ROUNDS  # each round ends with two clean passes
    assert tally.cut_passes >= 0.6 * faulty, tally.cut_summary()


def test_killed_worker_leaves_the_mailbox_as_a_clean_run_would(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    rng = random.Random(4711)
    tally = Tally()
    points = sorted(KILL_POINTS) * (KILL_ROUNDS // len(KILL_POINTS))
    rng.shuffle(points)
    with CutProxy(dovecot.port) as proxy:
        for n, point in enumerate(points):
            root = tmp_path / f"k{n}"
            kill_round(dovecot, proxy, root, rng, tally, point)
            shutil.rmtree(root)
    print(tally.kill_summary(), tally.hostile_summary())
    assert tally.mismatches == [], "\n".join(tally.mismatches)
    assert tally.rounds == KILL_ROUNDS
    assert tally.hostile > 0 and tally.message_faults == 0, tally.hostile_summary()
    # The kills land mid-pass, at each of the points: every scenario has work to do.
    assert tally.mid_pass >= 0.8, tally.kill_summary()
    assert all(tally.reached[name] >= 1 for name in KILL_POINTS), tally.kill_summary()


def test_the_proxy_reads_commands_past_literals() -> None:
    """Message text sent as a literal is never taken for a command (a trip on
    ``UID STORE`` must not fire on a draft that mentions one)."""
    body = b"Subject: x\r\n\r\nA1 UID STORE 1 +FLAGS (x)\r\nA2 LOGOUT\r\n"
    stream = [
        b'A3 APPEND "Drafts" (\\Draft) {%d+}\r\n' % len(body) + body[:20],
        body[20:] + b" (\\Draft) {3}\r\n",  # MULTIAPPEND: a second message, synchronising
        b"abc\r\nA4 UID ST",
        b"ORE 5 +FLAGS.SILENT ($x)\r\n",
    ]
    lines = Lines()
    seen = [line for chunk in stream for line in lines.feed(chunk)]
    assert seen == [
        b'A3 APPEND "Drafts" (\\Draft) {%d+}' % len(body),
        b"A4 UID STORE 5 +FLAGS.SILENT ($x)",
    ]
