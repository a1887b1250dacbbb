"""`inbox-guard demo`: runs on the embedded server and shows what the server holds."""

from __future__ import annotations

import email
import os
import subprocess
import sys
import time
from email.policy import default as default_policy
from pathlib import Path

from inbox_guard import demo
from inbox_guard.compose import ALERT_SUBJECT


def test_demo_output_matches_what_the_embedded_server_holds(tmp_path: Path) -> None:
    lines: list[str] = []
    run = demo.run(tmp_path / "demo")
    demo.show(run, lines.append)
    text = "\n".join(lines)

    flagged = {f["uid"]: f for f in run.result.flagged}
    seeded = {s.uid for s in run.seeded}
    # Every flagged message is marked on the server; nothing else is.
    for uid in seeded:
        assert ("\\Flagged" in run.inbox[uid][0]) == (uid in flagged), uid
    # Nothing moved or deleted; the only additions are the alert and the digest, to Alex.
    added = [
        email.message_from_bytes(raw, policy=default_policy)
        for uid, (_, raw) in run.inbox.items()
        if uid not in seeded
    ]
    assert seeded <= run.inbox.keys()
    assert sorted(str(m["To"]) for m in added) == ["alex@example.org", "alex@example.org"]
    assert run.digest.message is not None
    subjects = sorted(str(m["Subject"]) for m in added)
    assert subjects == [run.digest.message["Subject"], ALERT_SUBJECT]
    assert [f["risk"] for f in run.result.flagged].count(True) == 1
    assert f"The morning digest, delivered to your inbox: {run.digest.message['Subject']}" in text
    assert "NEEDS ATTENTION: risk words found (keyword screen, not an assessment)" in text

    # One draft per flagged message that called for one, addressed to the client.
    drafted = sorted(f["uid"] for f in run.result.flagged if f["draft"])
    assert len(run.drafts) == len(drafted) == 3
    drafts = [
        email.message_from_bytes(raw, policy=default_policy) for _, raw in run.drafts.values()
    ]
    assert {d["To"] for d in drafts} == {
        "jane@example.org",
        "sam.lee@example.net",
        "robin@example.com",
    }
    assert all({"\\Draft", "\\Seen"} <= flags for flags, _ in run.drafts.values())
    assert f"Drafts folder: {len(run.drafts)} holding replies" in text

    # The draft shown in full is the one on the server.
    first = email.message_from_bytes(run.drafts[min(run.drafts)][1], policy=default_policy)
    assert f"Subject: {first['Subject']}" in text
    assert first.get_content().strip().splitlines()[0] in text

    # The table tells each kind of decision.
    for phrase in [
        "in hours: left alone",
        "no draft (window)",
        "no draft (not-addressed)",
        "machine-written (mailing-list)",
        "machine-written (auto-submitted)",
        "not a client: left alone",
    ]:
        assert phrase in text, phrase

    # Agenda files printed are the files written, and they hold one line per contact.
    agenda_dir = run.settings.agenda_dir
    files = sorted(agenda_dir.rglob("*.md"))
    assert {f["agenda"] for f in run.result.flagged} == {
        f"agendas/{p.relative_to(agenda_dir)}" for p in files
    }
    for p in files:
        assert f"== {p.relative_to(agenda_dir)}" in text
        assert p.read_text().rstrip() in text


def test_demo_command_runs_quickly_and_cleans_up(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"  # the demo's temporary folder goes here, and must go
    scratch.mkdir()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "inbox_guard", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < 60
    assert "One draft in full:" in done.stdout
    assert "The demo's files were removed" in done.stdout
    assert done.stderr == ""
    assert list(scratch.iterdir()) == []


def test_the_demo_table_keeps_its_columns_apart(tmp_path: Path) -> None:
    lines: list[str] = []
    demo.show(demo.run(tmp_path / "demo"), lines.append)
    header = next(i for i, line in enumerate(lines) if line.startswith("received (local)"))
    starts = [lines[header].index(name) for name in ("from", "subject", "what inbox-guard did")]
    rows = lines[header + 1 : lines.index("", header)]
    assert len(rows) >= 8
    for row in rows:
        for start in starts:  # every column begins where its heading does, after a gap
            assert row[start - 2 : start] == "  " and row[start] != " ", row
