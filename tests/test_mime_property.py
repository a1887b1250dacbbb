"""Any MIME structure a sender can build, in any charset and transfer encoding, is
triaged end to end against Dovecot: marked, noted, screened, never a fault of the pass.
All mail is generated (hypothesis), all of it synthetic."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inbox_guard.cli import main

from .conftest import JANE, PASSWORD_ENV, SAM, THERAPIST, Account, message, write_practice
from .dovecot import Dovecot
from .hostile_corpus import charset_names

SUNDAY_NIGHT = datetime(2026, 11, 15, 23, 40, tzinfo=UTC)
_users = itertools.count(1)

encodings = st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "binary", "x-junk", ""])
kinds = st.sampled_from(
    [
        "text/plain",
        "text/html",
        "text/x-unknown",
        "application/octet-stream",
        "message/rfc822",
        "image/png",
    ]
)
bodies = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.just(b"I want to die tonight"),
)


@st.composite
def leaf(draw: st.DrawFn) -> bytes:
    kind = draw(kinds)
    charset = draw(charset_names).replace("\r", "").replace("\n", "")
    head = f'Content-Type: {kind}; charset="{charset}"\r\n'
    head += f"Content-Transfer-Encoding: {draw(encodings)}\r\n"
    if draw(st.booleans()):
        head += 'Content-Disposition: attachment; filename="=?utf-7?q?+2AA-?="\r\n'
    body = draw(bodies).replace(b"\r", b"").replace(b"\n", b"\r\n").replace(b"\x00", b" ")
    return head.encode("utf-8", "surrogatepass") + b"\r\n" + body


def multipart(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        sub = draw(st.sampled_from(["mixed", "alternative", "related", "x-odd"]))
        boundary = f"b{draw(st.integers(0, 10**6))}"
        parts = draw(st.lists(children, min_size=0, max_size=3))
        close = draw(st.booleans())  # a missing closing boundary is common in the wild
        out = f'Content-Type: multipart/{sub}; boundary="{boundary}"\r\n\r\n'.encode()
        for p in parts:
            out += f"--{boundary}\r\n".encode() + p + b"\r\n"
        return out + (f"--{boundary}--\r\n".encode() if close else b"")

    return build()


structures = st.recursive(leaf(), multipart, max_leaves=5)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(structure=structures, subject_charset=charset_names)
def test_any_mime_structure_is_triaged_and_never_stops_the_pass(
    dovecot: Dovecot, structure: bytes, subject_charset: str
) -> None:
    user, password = dovecot.user(f"mime{next(_users)}")
    account = Account(dovecot, user, password)
    os.environ[PASSWORD_ENV] = password
    charset = subject_charset.replace("?", "").replace("\r", "").replace("\n", "") or "x"
    head = (
        f"From: {JANE}\r\nTo: {THERAPIST}\r\nSubject: =?{charset}?q?=FF=2B2AA-?=\r\n"
        f"Message-ID: <mime{next(_users)}@example.org>\r\nMIME-Version: 1.0\r\n"
    )
    hostile = account.append(head.encode("utf-8", "surrogatepass") + structure, SUNDAY_NIGHT)
    normal = account.append(message(sender=SAM), SUNDAY_NIGHT + timedelta(minutes=1))
    with tempfile.TemporaryDirectory() as root:
        p = write_practice(Path(root), account)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = main(
                ["--config", str(p.config), "once", "--json", "--now", "2026-11-16T08:00:00+00:00"]
            )
        assert code == 0
        result = json.loads(out.getvalue())
        assert result["errors"] == []
        assert sorted(f["uid"] for f in result["flagged"]) == [hostile, normal]
