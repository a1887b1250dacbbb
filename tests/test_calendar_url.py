"""The one rule for a calendar URL: http(s) in any case, https anywhere, http only to a
loopback host, no user name or password, whatever the spelling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inbox_guard.schema import calendar_url, calendar_url_problem

REFUSED = [
    "HTTP://evil.example/cal.ics",  # upper-case scheme, remote host
    "Http://evil.example/cal.ics",
    "http://evil.example#@127.0.0.1/x.ics",  # the host is evil.example; the rest a fragment
    "http://evil.example?@127.0.0.1/x.ics",
    "http://127.0.0.1@evil.example/",  # 127.0.0.1 is a user name here
    "https://127.0.0.1@evil.example/",  # no user info at all, even with https
    "https://user:pass@calendar.example.org/x.ics",
    "http://localhost:80@evil.example/",
    "http://evil.example\\@127.0.0.1/",
    "http://127.0.0.1.evil.example/x.ics",
    "http://127.1/x.ics",  # not a spelling is_loopback knows: refused, the safe way
    "http://[::ffff:192.0.2.1]/x.ics",
    "ftp://calendar.example.org/x.ics",
    "FILE:///etc/passwd",
    "file:///home/alex/calendar.ics",
    "gopher://127.0.0.1/x",
    "https:///x.ics",  # no host
    "http:evil.example/x.ics",
    " https://calendar.example.org/x.ics",
    "https://calendar.example.org/x.ics\n",
    "https://calendar.example.org/a b.ics",
    "https://calendar.example.org:99999/x.ics",
    "https://calendar.example.org:port/x.ics",
    "<URL:http://evil.example/x.ics>",
]

ALLOWED = [
    "https://calendar.example.org/x.ics?token=s3cret",
    "HTTPS://Calendar.Example.org/x.ics",
    "http://127.0.0.1:8080/cal.ics",
    "HTTP://localhost/cal.ics",
    "http://[::1]:8080/cal.ics",
    "http://127.0.0.1/x.ics#@evil.example",  # a fragment is not a host
    "https://calendar.example.org/x.ics?next=http://evil.example@127.0.0.1/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_tricky_spellings_are_refused(url: str) -> None:
    problem = calendar_url_problem(url)
    assert problem is not None
    assert "evil" not in problem and "s3cret" not in problem  # the URL is never repeated


@pytest.mark.parametrize("url", ALLOWED)
def test_https_anywhere_and_http_to_loopback_are_allowed(url: str) -> None:
    assert calendar_url_problem(url) is None
    assert calendar_url(url) == url


@pytest.mark.parametrize(
    ("source", "fetched"),
    [
        ("calendar.ics", None),
        ("/home/alex/calendar.ics", None),
        ("cal:endar.ics", None),  # a colon alone does not make a URL
        ("webcal://calendar.example.org/x.ics", "https://calendar.example.org/x.ics"),
        ("WEBCAL://calendar.example.org/x.ics", "https://calendar.example.org/x.ics"),
        ("webcals://calendar.example.org/x.ics", "https://calendar.example.org/x.ics"),
    ],
)
def test_a_source_is_a_file_or_the_url_to_fetch(source: str, fetched: str | None) -> None:
    assert calendar_url(source) == fetched


@pytest.mark.parametrize("url", REFUSED)
def test_calendar_url_refuses_what_the_rule_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        calendar_url(url)


def test_a_redirect_from_elsewhere_never_leads_to_this_machine() -> None:
    local = "http://127.0.0.1:8080/cal.ics"
    assert calendar_url_problem(local, redirected_from="http://localhost:9/x") is None
    assert calendar_url_problem(local, redirected_from="https://calendar.example.org/x")
    assert calendar_url_problem(
        "https://localhost/cal.ics", redirected_from="https://calendar.example.org/x"
    )
    assert (
        calendar_url_problem(
            "https://cdn.example.net/x.ics", redirected_from="https://calendar.example.org/x"
        )
        is None
    )


HOSTS = {
    "127.0.0.1": True,
    "localhost": True,
    "LocalHost": True,
    "[::1]": True,
    "127.9.9.9": True,
    "evil.example": False,
    "192.0.2.1": False,
    "[2001:db8::1]": False,
}


@given(
    scheme=st.sampled_from(["http", "HTTP", "hTtP", "https", "HTTPS", "ftp", "file", "webcal"]),
    user=st.sampled_from(["", "127.0.0.1@", "localhost:80@", "u:p@", "@"]),
    host=st.sampled_from(sorted(HOSTS)),
    port=st.sampled_from(["", ":80", ":8443"]),
    tail=st.sampled_from(
        [
            "",
            "/",
            "/cal.ics",
            "/x#@127.0.0.1/",
            "?a=@localhost",
            "#@evil.example",
            "/x?token=s3cret",
        ]
    ),
)
def test_the_rule_agrees_with_how_the_url_was_built(
    scheme: str, user: str, host: str, port: str, tail: str
) -> None:
    url = f"{scheme}://{user}{host}{port}{tail}"
    kind = scheme.lower()
    allowed = not user and (kind == "https" or (kind == "http" and HOSTS[host]))
    assert (calendar_url_problem(url) is None) == allowed, url
