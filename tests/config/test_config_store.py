"""The ``store:`` block of devices.yaml: read, checked with FILE:LINE, its password never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from stellate.config import (
    STORE_PASSWORD_ENV,
    ConfigError,
    InvalidFields,
    StoreSettings,
    loads_config,
)
from stellate.store.ownership import DEFAULT_LEASE

DEVICES = "devices:\n  - device_id: a\n    server_url: ws://127.0.0.1:5005/ws\n"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        loads_config(text, "devices.yaml")
    return [str(problem) for problem in caught.value.problems]


def test_without_a_store_block_the_fleet_stays_in_memory() -> None:
    assert loads_config(DEVICES).store is None


def test_a_store_block_is_read_with_its_defaults() -> None:
    config = loads_config("store:\n  url: redis://10.0.0.5:6380/2\n" + DEVICES)
    assert config.store == StoreSettings(url="redis://10.0.0.5:6380/2")
    assert config.store.lease == DEFAULT_LEASE == 15.0
    assert config.store.password_file is None and config.store.cafile is None
    tls = loads_config("store:\n  url: rediss://h/0\n  cafile: ca.pem\n  lease: 30\n" + DEVICES)
    assert tls.store is not None and (tls.store.cafile, tls.store.lease) == ("ca.pem", 30.0)


def test_every_problem_is_reported_with_its_line_and_no_password() -> None:
    text = (
        "store:\n"
        "  url: redis://:hunter2@127.0.0.1:0/zero\n"
        "  lease: 2\n"
        "  password_file: ''\n"
        "  leese: 3\n" + DEVICES
    )
    found = problems(text)
    assert any(p.startswith("devices.yaml:2: store.url: has an invalid port") for p in found)
    assert any(p.startswith("devices.yaml:2: store.url: must name its database") for p in found)
    assert "devices.yaml:3: store.lease: must be between 5 and 600 seconds, got 2.0" in found
    assert any(
        p.startswith("devices.yaml:4: store.password_file: must not be empty") for p in found
    )
    assert any(
        p.startswith("devices.yaml:5: store.leese: unknown key 'leese' (did you mean 'lease'?)")
        for p in found
    )
    assert not any("hunter2" in p for p in found)
    assert all("redis://***@127.0.0.1:0/zero" in p for p in found if "store.url" in p)


@pytest.mark.parametrize(
    ("block", "words"),
    [
        ("store: 5\n", "store: expected a mapping or null"),
        ("store:\n  lease: 30\n", "store.url: required key missing"),
        ("store:\n  url: ws://h:1/ws\n", "must be a redis:// or rediss:// URL"),
        ("store:\n  url: redis://h/0\n  lease: '15'\n", "store.lease: expected a number"),
        ("store:\n  url: redis://h/0\n  lease: .inf\n", "store.lease: must be a finite number"),
    ],
)
def test_a_malformed_block_is_refused(block: str, words: str) -> None:
    assert any(words in problem for problem in problems(block + DEVICES))


def test_a_password_in_the_url_and_a_password_file_are_one_too_many() -> None:
    found = problems("store:\n  url: redis://:pw@h/0\n  password_file: pw.txt\n" + DEVICES)
    assert any("password_file: the url carries a password already" in p for p in found)


def test_settings_built_in_code_obey_the_same_rules() -> None:
    with pytest.raises(InvalidFields) as caught:
        StoreSettings(url="redis://:hunter2@h:0/0", lease=1.0)
    assert "hunter2" not in str(caught.value)
    assert {path for path, _ in caught.value.violations} == {("url",), ("lease",)}
    assert "hunter2" not in repr(StoreSettings(url="redis://:hunter2@h/0"))


def test_the_password_comes_from_the_url_then_the_file_then_the_environment(
    tmp_path: Path,
) -> None:
    env = {STORE_PASSWORD_ENV: "from-env"}
    assert StoreSettings(url="redis://:in-url@h/0").password(env) == "in-url"
    secret = tmp_path / "pw"
    secret.write_text("from-file\nignored\n", encoding="utf-8")
    assert StoreSettings(url="redis://h/0", password_file=str(secret)).password(env) == "from-file"
    assert StoreSettings(url="redis://h/0").password(env) == "from-env"
    assert StoreSettings(url="redis://h/0").password({}) is None
    with pytest.raises(OSError):
        StoreSettings(url="redis://h/0", password_file=str(tmp_path / "none")).password({})
