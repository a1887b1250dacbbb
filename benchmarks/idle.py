#!/usr/bin/env python3
"""What `inbox-guard run` costs while nothing happens: N practitioners (one group file,
push on) against one private Dovecot; once every IDLE watcher is waiting, the process's
CPU time over a quiet stretch, its threads, and how long SIGTERM takes.

    python3 benchmarks/idle.py [--accounts 10,100] [--seconds 20] [--baseline DIR]

``--baseline DIR`` measures another source tree (a checkout of an earlier commit) in the
same run, so the printed ratios hold on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.dovecot import Dovecot  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def group_file(folder: Path, server: Dovecot, n: int) -> Path:
    text = ['timezone = "Europe/London"', "[triage]", "poll_minutes = 60", ""]
    for i in range(n):
        user, password = server.user(f"bench{i}")
        os.environ[f"BENCH_PW_{i}"] = password
        (folder / "clients" / f"p{i}").mkdir(parents=True)
        text += [
            "[[accounts]]",
            f'id = "p{i}"',
            f'therapist = {{ name = "P{i}", email = "p{i}@example.org", emergency_text = "999" }}',
            f'account = {{ host = "127.0.0.1", port = {server.port}, security = "plain", '
            f'username = "{user}", password_env = "BENCH_PW_{i}" }}',
            "",
        ]
    path = folder / "group.toml"
    path.write_text("\n".join(text))
    return path


def measure(tree: Path, config: Path, n: int, seconds: float) -> dict[str, float]:
    log = config.parent / f"run-{n}-{tree.name}.log"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inbox_guard", "--config", str(config), "run"],
            stderr=err,
            stdout=subprocess.DEVNULL,
            env=env,
        )
    started = time.monotonic()
    while log.read_text().count("push: waiting for new mail with IDLE") < n:
        if proc.poll() is not None or time.monotonic() - started > 300:
            proc.kill()
            raise SystemExit(f"idle.py: `run` did not settle:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    settled = time.monotonic() - started
    time.sleep(2)  # the last passes' bookkeeping
    before = cpu_seconds(proc.pid)
    time.sleep(seconds)
    cpu = cpu_seconds(proc.pid) - before
    count = threads(proc.pid)
    stop = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    return {"settled": settled, "cpu": cpu, "threads": count, "sigterm": time.monotonic() - stop}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", default="10,100")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--baseline", type=Path)
    args = parser.parse_args()
    trees = [ROOT, *([args.baseline.resolve()] if args.baseline else [])]
    with tempfile.TemporaryDirectory() as tmp, Dovecot(Path(tmp) / "dovecot") as server:
        for n in (int(x) for x in args.accounts.split(",")):
            config = group_file(Path(tmp) / f"cfg{n}", server, n)
            rows = {tree: measure(tree, config, n, args.seconds) for tree in trees}
            for tree, r in rows.items():
                print(
                    f"{n:>5} accounts  {tree.name:>12}: idle CPU {r['cpu']:.2f} s per "
                    f"{args.seconds:.0f} s ({100 * r['cpu'] / args.seconds:.2f} % of a core), "
                    f"{r['threads']:.0f} threads, all watching after {r['settled']:.1f} s, "
                    f"SIGTERM to exit {r['sigterm']:.2f} s"
                )
            if args.baseline:
                new, old = rows[ROOT]["cpu"], rows[args.baseline.resolve()]["cpu"]
                print(f"{n:>5} accounts  idle CPU this tree / baseline = {new / old:.2f}")


if __name__ == "__main__":
    main()
