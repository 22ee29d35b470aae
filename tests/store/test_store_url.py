"""The fleet store's URL: read in one place (stellate/text/urls.py), shown only redacted."""

from __future__ import annotations

import pytest

from stellate.text.urls import InvalidUrl, parse_store_url, redact_url, store_url_problems


def test_a_full_url_is_split_into_what_a_client_needs() -> None:
    url = parse_store_url("rediss://fleet:p%40ss%3Aword@redis.example:6380/3")
    assert (url.host, url.port, url.db, url.tls) == ("redis.example", 6380, 3, True)
    assert (url.username, url.password) == ("fleet", "p@ss:word")
    assert url.safe == "rediss://***@redis.example:6380/3"
    assert "p@ss" not in repr(url) and "p%40ss" not in repr(url)


def test_defaults_port_6379_database_0_no_password() -> None:
    url = parse_store_url("redis://127.0.0.1")
    assert (url.port, url.db, url.tls, url.password, url.username) == (6379, 0, False, None, None)
    assert parse_store_url("redis://h/").db == 0
    assert parse_store_url("redis://:pw@h").password == "pw"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ws://h:5005/ws", "redis:// or rediss://"),
        ("redis://:6379/0", "no host"),
        ("redis://h:0/0", "port"),
        ("redis://h:70000/0", "port"),
        ("redis://h:/0", "port"),
        ("redis://h/zero", "database as a number"),
        ("redis://h/0?timeout=1", "query"),
        ("redis://h/0#x", "fragment"),
        ("redis://h /0", "whitespace"),
    ],
)
def test_a_malformed_url_names_its_problem(url: str, words: str) -> None:
    problems = store_url_problems(url)
    assert any(words in problem for problem in problems), problems
    with pytest.raises(InvalidUrl):
        parse_store_url(url)


def test_problems_show_the_url_without_its_password() -> None:
    problems = store_url_problems("redis://:hunter2@h:0/x")
    assert len(problems) == 2
    assert all("hunter2" not in p and "redis://***@h:0/x" in p for p in problems)
    assert redact_url("redis://user:hunter2@h:1/0") == "redis://***@h:1/0"
