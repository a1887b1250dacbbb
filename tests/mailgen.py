"""Synthetic mailboxes written straight into a Dovecot maildir (fast, with chosen
INTERNALDATEs: Dovecot takes a maildir message's arrival time from the file's mtime).

All mail is generated: numbered senders at example domains, fixed phrases. About 5%
comes from 25 client addresses; a few messages carry multi-MB attachments.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

CLIENTS = [f"client{k:02d}@clients.example" for k in range(25)]
ATTACHMENT = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n" * 60_000  # ~2.2 MB base64


@dataclass
class Filled:
    messages: int = 0
    from_clients: int = 0
    bytes: int = 0


def _message(i: int, sender: str, when: datetime, rng: random.Random, big: bool) -> bytes:
    head = (
        f"From: Sender {i} <{sender}>\r\nTo: Alex Morgan <alex@example.org>\r\n"
        f"Subject: synthetic message {i}\r\nDate: {when:%a, %d %b %Y %H:%M:%S +0000}\r\n"
        f"Message-ID: <bench.{i}.{rng.getrandbits(32):x}@example.net>\r\nMIME-Version: 1.0\r\n"
    )
    text = "A synthetic benchmark message. " * rng.randint(5, 60) + "\r\n"
    if not big:
        return (head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text).encode()
    return (
        (
            head + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + "--b\r\n"
            "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            'Content-Disposition: attachment; filename="scan.bin"\r\n\r\n'
        ).encode()
        + ATTACHMENT
        + b"--b--\r\n"
    )


def fill(
    maildir: Path,
    n: int,
    seed: int = 1,
    now: datetime | None = None,
    client_share: float = 0.05,
    big_share: float = 0.002,
    years: float = 3.0,
) -> Filled:
    """Write ``n`` messages into ``maildir`` (created), arrival times over ``years``."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC) - timedelta(hours=1)
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    out = Filled()
    span = int(years * 365 * 86400)
    owner = ("mail", "mail") if os.geteuid() == 0 else None
    for i in range(n):
        client = rng.random() < client_share
        sender = (
            rng.choice(CLIENTS)
            if client
            else f"person{rng.randint(1, 5000)}@mail{rng.randint(1, 40)}.example"
        )
        when = now - timedelta(seconds=rng.randint(60, span))
        raw = _message(i, sender, when, rng, big=rng.random() < big_share)
        ts = int(when.timestamp())
        seen = "S" if rng.random() < 0.8 else ""
        path = maildir / "cur" / f"{ts}.M{i}P1.bench,S={len(raw)}:2,{seen}"
        path.write_bytes(raw)
        os.utime(path, (ts, ts))
        out.messages += 1
        out.from_clients += client
        out.bytes += len(raw)
    if owner:
        for dirpath, _dirs, filenames in os.walk(maildir):
            shutil.chown(dirpath, *owner)
            for f in filenames:
                shutil.chown(os.path.join(dirpath, f), *owner)
    return out
