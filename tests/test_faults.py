"""Exactly once under faults: cut connections and killed workers against real Dovecot."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

from .dovecot import Dovecot
from .fault_rounds import Tally, cut_round, kill_round
from .faults import CutProxy

CUT_ROUNDS, CUT_BUDGET_S = 200, 60
KILL_ROUNDS, KILL_BUDGET_S = 25, 45


def test_cut_connections_leave_the_mailbox_as_a_clean_run_would(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    rng = random.Random(20261122)
    tally = Tally()
    deadline = time.monotonic() + CUT_BUDGET_S
    with CutProxy(dovecot.port) as proxy:
        while tally.rounds < CUT_ROUNDS and time.monotonic() < deadline:
            root = tmp_path / f"r{tally.rounds}"
            cut_round(dovecot, proxy, root, rng, tally)
            shutil.rmtree(root)
    print(f"cut rounds {tally.rounds}, cuts {tally.cuts}, passes {tally.passes}")
    assert tally.mismatches == []
    assert tally.rounds >= 50 and tally.cuts >= tally.rounds


def test_killed_worker_leaves_the_mailbox_as_a_clean_run_would(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    rng = random.Random(4711)
    tally = Tally()
    deadline = time.monotonic() + KILL_BUDGET_S
    while tally.rounds < KILL_ROUNDS and time.monotonic() < deadline:
        root = tmp_path / f"k{tally.rounds}"
        kill_round(dovecot, root, rng, tally)
        shutil.rmtree(root)
    print(f"kill rounds {tally.rounds}, kills {tally.kills}, passes {tally.passes}")
    assert tally.mismatches == []
    assert tally.rounds >= 5 and tally.kills >= 1
