"""Hostile mail a forger can send from a client's address, for tests and the stress
benchmark. All synthetic. Each message is a whole RFC 5322 message (CRLF), From the
client ``sender``, To the practitioner, so it is out-of-hours client mail that a pass
must triage (or report) without stopping."""

from __future__ import annotations

import base64
import encodings
import encodings.aliases
import pkgutil

from hypothesis import strategies as st

# Every codec and alias name Python knows, the spellings senders use, and junk.
CODEC_NAMES = sorted(
    {m.name for m in pkgutil.iter_modules(encodings.__path__)}
    | set(encodings.aliases.aliases)
    | set(encodings.aliases.aliases.values())
    | {
        "UTF-8",
        "utf8",
        "x-unknown",
        "",
        "unicode-1-1-utf-7",
        "idna",
        "IDNA",
        "punycode",
        "undefined",
        "unicode_escape",
        "raw_unicode_escape",
        "rot13",
        "base64",
        "hex",
        "zlib",
        "bz2",
        "uu",
        "quopri",
        "mbcs",
        "oem",
        "utf-16",
        "utf_32_be",
        "x" * 500,
        "utf-8*en",
        '"utf-8"',
        "ü",
        "\x00",
        "../../etc",
        "utf-8'en'",
    }
)
charset_names = st.one_of(st.sampled_from(CODEC_NAMES), st.text(max_size=40))

BOUNDARY = "b1"


def _msg(sender: str, to: str, headers: str, body: str, mid: str) -> bytes:
    head = f"From: {sender}\nTo: {to}\nMessage-ID: <{mid}@hostile.example>\n{headers}"
    raw = head.rstrip("\n").replace("\n", "\r\n") + "\r\n\r\n" + body.replace("\n", "\r\n")
    return raw.encode("utf-8", "surrogateescape")


def corpus(sender: str, to: str, tag: str = "h") -> dict[str, bytes]:
    """name -> raw message; ``tag`` makes the Message-IDs unique per use."""

    def m(name: str, headers: str, body: str = "Synthetic.\n") -> tuple[str, bytes]:
        return name, _msg(sender, to, headers, body, f"{tag}.{name}")

    utf7_surrogate = "+2AA-"
    items = [
        m(
            "charset-undefined",
            "Subject: undefined\nContent-Type: text/plain; charset=undefined\n",
            "I want to die tonight\n",
        ),
        m(
            "charset-idna",
            "Subject: idna\nContent-Type: text/plain; charset=idna\n",
            "hello xn--\n",
        ),
        m(
            "charset-punycode",
            "Subject: punycode\nContent-Type: text/plain; charset=punycode\n",
            "a" * 20000 + "-" + "b" * 20000 + "\n",
        ),
        m(
            "charset-unicode-escape",
            "Subject: esc\nContent-Type: text/plain; charset=unicode_escape\n",
            "\\ud800 \\x\n",
        ),
        m(
            "charset-utf7-surrogate",
            "Subject: utf7\nContent-Type: text/plain; charset=utf-7\n",
            utf7_surrogate + " end it all\n",
        ),
        m("charset-base64-codec", "Subject: codec\nContent-Type: text/plain; charset=base64\n"),
        m("charset-huge-name", f"Subject: long\nContent-Type: text/plain; charset={'x' * 3000}\n"),
        m("subject-utf7", "Subject: =?utf-7?q?+2AA-?=\n"),
        m("subject-unicode-escape", "Subject: =?unicode_escape?q?=5Cud800?=\n"),
        m("subject-bad-base64", "Subject: =?utf-8?b?abc?= =?utf-8?b?!!!?=\n"),
        m("subject-unknown-charset", "Subject: =?x-klingon?q?=FF=FE?=\n"),
        m("subject-bidi", "Subject: invoice\u202egpj.exe\u200b\u2066x\u2069\n"),
        m(
            "subject-markdown",
            "Subject: ![x](https://evil.example/pixel.png) [a](javascript:x) <img src=x>"
            " `tick` # head\n",
        ),
        m("subject-terminal", "Subject: \x1b[2J\x1b]0;owned\x07 hello\n"),
        m(
            "subject-header-injection",
            "Subject: =?utf-8?q?Hi=0D=0ABcc:_evil@example.com=0D=0A=0D=0Abody?=\n",
        ),
        m(
            "message-id-odd",
            "Subject: odd id\nReferences: " + " ".join(f"<r{i}@x>" for i in range(2000)) + "\n",
        ),
        m(
            "html-hostile",
            "Subject: html\nContent-Type: text/html; charset=unicode_escape\n",
            "<html><script>\\ud800</script><p>I want to die<!-- <x \n",
        ),
        m(
            "base64-garbage",
            "Subject: b64\nContent-Type: text/plain; charset=utf-8\n"
            "Content-Transfer-Encoding: base64\n",
            "!!!!not base64 at all ====\n",
        ),
        m("utf16-odd", "Subject: u16\nContent-Type: text/plain; charset=utf-16\n", "x\n"),
        m(
            "multipart-nested",
            f"Subject: nested\nMIME-Version: 1.0\n"
            f"Content-Type: multipart/mixed; boundary={BOUNDARY}\n",
            f"--{BOUNDARY}\nContent-Type: multipart/alternative; boundary=b2\n\n"
            "--b2\nContent-Type: text/plain; charset=utf-7\n\n+2AA- want to die\n"
            "--b2\nContent-Type: text/html; charset=idna\n\n<p>x</p>\n--b2--\n"
            f'--{BOUNDARY}\nContent-Type: application/octet-stream; name="=?utf-7?q?+2AA-?="\n'
            "Content-Transfer-Encoding: base64\n\n"
            + base64.b64encode(b"\x00" * 300).decode()
            + f"\n--{BOUNDARY}--\n",
        ),
        m(
            "multipart-broken",
            "Subject: broken\nMIME-Version: 1.0\nContent-Type: multipart/mixed\n",
            "--nothing\nbroken\n",
        ),
        m("content-type-junk", 'Subject: junk\nContent-Type: ;;;charset=="\u00e9";\n'),
        m(
            "encoded-display-name",
            "Subject: name\n".replace(
                "Subject", "Reply-To: =?x-unknown?b?/w==?= <x@y.example>\nSubject"
            ),
        ),
    ]
    return dict(items)
