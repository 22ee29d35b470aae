"""Issue 21, class 8: every command-line flag is held to the rules of the key it stands for.

``stellate serve --registration-timeout nan`` (or -1, 0), ``--heartbeat-interval 0``,
``--miss-limit 0`` and ``stellate agent --heartbeat-interval nan`` were accepted: the server then
dropped every client (with tracebacks for nan and -1) and the agent died with an
ExceptionGroup traceback, while the same values in a devices.yaml are refused. Now a flag that
sets a timing key is parsed as that key's type and checked by that key's own rule
(``Timing.rule_violations``: the config loader's rule), and every other number flag has a
rule of its own; a refused value is a usage error (exit 2) whose message names the flag.

The flags are found by walking the parser, so a flag added later is held to the same rules
without a test of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
from collections.abc import Iterator

import attrs
import pytest
from hardening_support import FIGURES
from hypothesis import example, given, settings
from hypothesis import strategies as st
from profiles import examples

from stellate.cli import build_parser
from stellate.timing import Timing

#: What each command needs besides the flag under test.
REQUIRED = {"agent": ["--server", "ws://127.0.0.1:1/ws"]}
TIMING_FIELDS = {field.name for field in attrs.fields(Timing)}


def number_flags() -> Iterator[tuple[str, str, str]]:
    """``(command, flag, dest)`` for every flag of every command that parses a value."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, sub in commands.choices.items():
        for action in sub._actions:
            if action.option_strings and action.type is not None and action.nargs is None:
                yield command, action.option_strings[-1], action.dest


FLAGS = sorted(number_flags())
TIMING_FLAGS = [flag for flag in FLAGS if flag[2] in TIMING_FIELDS]


def parse(command: str, flag: str, value: str) -> tuple[int, object, str]:
    """(exit status, the parsed value, stderr) of ``stellate COMMAND FLAG VALUE``."""
    argv = [command, *REQUIRED.get(command, []), f"{flag}={value}"]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0), None, err.getvalue()
    return 0, getattr(args, flag.lstrip("-").replace("-", "_")), err.getvalue()


def test_the_issue_s_flags_are_among_those_checked() -> None:
    assert {("serve", "--registration-timeout"), ("serve", "--heartbeat-interval")} <= {
        (c, f) for c, f, _ in TIMING_FLAGS
    }
    assert ("serve", "--miss-limit") in {(c, f) for c, f, _ in TIMING_FLAGS}
    assert ("agent", "--heartbeat-interval") in {(c, f) for c, f, _ in TIMING_FLAGS}


values = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e400", "-1", "0", "0.0", "-0", "1", "2.5"]),
    st.sampled_from(["", " ", "abc", "1_000", "0x10", "１", "3 ", "1e-400", "1e308"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**6), 10**6).map(str),
)


def _config_verdict(dest: str, text: str) -> object | None:
    """What the config key accepts for ``text`` (parsed as a number the way YAML would
    hold it): the value, or None when its rule refuses it."""
    kind = attrs.fields_dict(Timing)[dest].type
    kind = {"float": float, "int": int}.get(kind, kind)  # annotations are strings
    try:
        value = kind(text)
    except ValueError:
        return None
    return None if Timing.rule_violations({dest: value}) else value


@settings(max_examples=examples(200))
@given(flag=st.sampled_from(TIMING_FLAGS), text=values)
@example(flag=("serve", "--registration-timeout", "registration_timeout"), text="nan")
@example(flag=("serve", "--registration-timeout", "registration_timeout"), text="-1")
@example(flag=("serve", "--registration-timeout", "registration_timeout"), text="0")
@example(flag=("serve", "--heartbeat-interval", "heartbeat_interval"), text="0")
@example(flag=("serve", "--miss-limit", "miss_limit"), text="0")
@example(flag=("agent", "--heartbeat-interval", "heartbeat_interval"), text="nan")
def test_a_timing_flag_accepts_exactly_what_its_config_key_accepts(
    flag: tuple[str, str, str], text: str
) -> None:
    FIGURES["flags tried"] += 1
    command, option, dest = flag
    status, parsed, err = parse(command, option, text)
    expected = _config_verdict(dest, text)
    if expected is None:
        assert status == 2, f"{command} {option}={text!r} was accepted as {parsed!r}"
        assert f"argument {option}" in err  # the message names the flag
    else:
        assert status == 0 and parsed == expected


@pytest.mark.parametrize(("command", "flag", "dest"), FLAGS)
def test_no_number_flag_takes_a_number_that_is_not_one(command: str, flag: str, dest: str) -> None:
    """Whatever its rule, no flag takes NaN, an infinity or a number no double holds, and
    only a port (0: any free one) or a seed takes zero or less."""
    FIGURES["flags tried"] += 1
    for text in ("nan", "inf", "-inf", "1e400", "abc", ""):
        status, parsed, err = parse(command, flag, text)
        assert status == 2, f"{command} {flag}={text!r} was accepted as {parsed!r}"
        assert f"argument {flag}" in err
    takes = {"--seed": ("-1", "0"), "--port": ("0",), "--metrics-port": ("0",)}.get(flag, ())
    for text in ("-1", "0"):
        status, parsed, err = parse(command, flag, text)
        if text in takes:
            assert status == 0 and isinstance(parsed, int)
        else:
            assert status == 2, f"{command} {flag}={text!r} was accepted as {parsed!r}"
            assert f"argument {flag}" in err


def test_every_number_a_flag_accepts_is_finite() -> None:
    for command, flag, _ in FLAGS:
        status, parsed, _ = parse(command, flag, "1")
        assert status == 0 and isinstance(parsed, int | float) and math.isfinite(parsed)
