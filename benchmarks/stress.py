#!/usr/bin/env python3
"""Stress the exactly-once promise: randomised cut and kill rounds for a while.

    python3 benchmarks/stress.py [--minutes 10] [--seed N]

Starts a private Dovecot, then alternates rounds of connections cut at random points
(bytes or commands, through a proxy) and workers SIGKILLed at a random one of the
points of progress in ``tests/fault_rounds.py`` (after the plan is recorded, between
STORE and APPEND, between APPEND and its record), each compared with a clean run of
the same synthetic mailbox. Prints the rounds, cuts, kills per point (and the share
that landed mid-pass) and passes, and every mismatch (duplicates, losses, flag
changes); exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.dovecot import Dovecot
from tests.fault_rounds import Tally, cut_round, kill_round
from tests.faults import CutProxy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    cut, kill = Tally(), Tally()
    started = time.monotonic()
    deadline = started + args.minutes * 60
    work = Path(tempfile.mkdtemp(prefix="ig-stress-"))
    with Dovecot() as server, CutProxy(server.port) as proxy:
        while time.monotonic() < deadline:
            root = work / f"r{cut.rounds + kill.rounds}"
            if rng.random() < 0.8:
                cut_round(server, proxy, root, rng, cut)
            else:
                kill_round(server, proxy, root, rng, kill)
            shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    print(f"seed {args.seed}; {elapsed / 60:.1f} min")
    print(cut.cut_summary())
    print(kill.kill_summary())
    print(
        f"hostile messages {cut.hostile + kill.hostile}; errors in passes that met no "
        f"fault {cut.message_faults + kill.message_faults}"
    )
    problems = cut.mismatches + kill.mismatches
    print(f"mismatches (duplicates, losses, flag changes): {len(problems)}")
    for p in problems:
        print("  " + p)
    return 1 if problems or cut.message_faults + kill.message_faults else 0


if __name__ == "__main__":
    sys.exit(main())
