"""What ``make mutate`` mutates, which tests judge each mutant, and what it leaves out, and why.

Every rule-bearing module is listed in ``TARGETS`` with the tests that cover it (fast, sharp
files first: ``pytest -x`` stops at the first failure, so a killed mutant costs one short
file; only a survivor runs the whole list). A module of those parts that is not mutated is in
``LEFT_OUT`` with the reason; ``test_mutation_plan.py`` fails on a module in neither.

``OPERATORS`` narrows cosmic-ray's operators to the selective set of the mutation-testing
literature (Offutt et al., "An experimental determination of sufficient mutant operators"):
arithmetic to its inverse and neighbours, every relational operator to its boundary and its
negation, ``and``/``or``, ``not`` added and removed, ``is``/``is not``, numbers off by one,
booleans flipped, loops run zero times, ``break``/``continue`` swapped, exceptions caught
replaced, decorators removed. The other replacements (``+`` → ``<<``, ``<`` → ``is``, …) are
killed by whatever kills their neighbours and only cost time.

``EXCLUDED`` lists mutants that no test can kill because the program behaves the same
(equivalent mutants), and mutants of message text only (how much a message quotes, a plural),
each with the reason. A mutant matches an entry when its operator matches
and its line, stripped, contains the entry's text: entries survive edits elsewhere in the file.
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: The parts of the package whose rules the mutation run holds the suite to: the timing, the
#: machine, the protocol, the configuration, the text rules, and the fleet store's ownership
#: rules (its pure rules, its keeper, its snapshot format, and the in-memory store that the
#: contract holds to the same rules as Redis).
RULE_PARTS = (
    "stellate/timing.py",
    "stellate/fsm",
    "stellate/protocol",
    "stellate/config",
    "stellate/text",
    "stellate/store",
    "stellate/adapters/store_memory.py",
)

_FSM_UNITS = (
    "tests/fsm/test_fsm_units.py",
    "tests/fsm/test_fsm_rules.py",
    "tests/fsm/test_fsm_checks.py",
)
_FSM_ALL = (
    *_FSM_UNITS,
    "tests/fsm/test_fsm_resume.py",
    "tests/fsm/test_fsm_meanings.py",
    "tests/fsm/test_fsm_diagram.py",
    "tests/fsm/test_fsm_pin.py",
    "tests/fsm/test_fsm_status_ownership.py",
    "tests/fsm/test_fsm_coverage.py",
    "tests/fsm/test_fsm_stateful.py",
    "tests/fsm/test_fsm_paths.py",
)
_CONFIG = (
    "tests/config/test_config_problems.py",
    "tests/config/test_config_load.py",
    "tests/config/test_config_loaders_agree.py",
    "tests/config/test_config_roundtrip.py",
    "tests/hardening/test_hostile_configs.py",
)
_STORE = (
    "tests/store/test_ownership_rules.py",
    "tests/store/test_snapshot.py",
    "tests/store/test_ownership_simulation.py",
    "tests/store/test_store_contract.py",
    "tests/store/test_ownership_loop.py",
    "tests/store/test_fleet_share.py",
    "tests/store/test_share_simulation.py",
)
_SERVER = (
    "tests/server/test_session_server.py",
    "tests/server/test_server_memory.py",
    "tests/hardening/test_server_retention.py",
    "tests/security/test_security_auth.py",
)

#: module → the tests that judge its mutants, in the order they run.
TARGETS: dict[str, tuple[str, ...]] = {
    "stellate/timing.py": (
        "tests/fsm/test_timing.py",
        "tests/config/test_config_problems.py",
        "tests/protocol/test_lease.py",
        *_FSM_ALL,
    ),
    "stellate/fsm/profile.py": (
        "tests/fsm/test_fsm_units.py",
        "tests/harness/test_fault_strategies.py",
    ),
    "stellate/fsm/table.py": _FSM_ALL,
    "stellate/fsm/states.py": _FSM_ALL,
    "stellate/fsm/lifecycle.py": _FSM_ALL,
    "stellate/fsm/event_data.py": _FSM_ALL,
    "stellate/fsm/resume.py": ("tests/fsm/test_fsm_resume.py", "tests/store/test_snapshot.py"),
    "stellate/fsm/checks.py": ("tests/fsm/test_fsm_checks.py", "tests/fsm/test_fsm_meanings.py"),
    "stellate/fsm/paths.py": (
        "tests/fsm/test_fsm_paths.py",
        "tests/fsm/test_fsm_units.py",
        "tests/fsm/test_fsm_strategies.py",
    ),
    "stellate/protocol/closing.py": ("tests/manager/test_close_reasons.py",),
    "stellate/protocol/codec.py": (
        "tests/protocol/test_codec.py",
        "tests/protocol/test_codec_fast_path.py",
        "tests/protocol/test_codec_properties.py",
        "tests/hardening/test_peer_json.py",
    ),
    "stellate/protocol/ids.py": (
        "tests/protocol/test_ids.py",
        "tests/hardening/test_identities.py",
        "tests/hardening/test_hostile_text.py",
        "tests/server/test_session_server.py",
    ),
    "stellate/protocol/lease.py": ("tests/protocol/test_lease.py",),
    "stellate/protocol/messages.py": (
        "tests/protocol/test_codec.py",
        "tests/protocol/test_session_client.py",
        "tests/server/test_session_server.py",
    ),
    "stellate/protocol/registry.py": _SERVER,
    "stellate/protocol/rejections.py": (
        "tests/protocol/test_rejections.py",
        "tests/protocol/test_session_client.py",
    ),
    "stellate/protocol/server_counts.py": ("tests/server/test_server_metrics.py", *_SERVER),
    "stellate/protocol/session_client.py": (
        "tests/protocol/test_session_client.py",
        "tests/protocol/test_rejections.py",
        "tests/manager/test_manager_memory.py",
    ),
    "stellate/protocol/session_server.py": _SERVER,
    "stellate/config/budget.py": (
        "tests/config/test_config_budget.py",
        "tests/config/test_config_loaders_agree.py",
        *_CONFIG,
    ),
    "stellate/config/converter.py": _CONFIG,
    "stellate/config/findings.py": _CONFIG,
    "stellate/config/loader.py": _CONFIG,
    "stellate/config/locate.py": _CONFIG,
    "stellate/config/model.py": _CONFIG,
    "stellate/config/problems.py": _CONFIG,
    "stellate/text/redact.py": (
        "tests/adapters/test_redact.py",
        "tests/hardening/test_key_leaks.py",
    ),
    "stellate/text/urls.py": (
        "tests/adapters/test_urls.py",
        "tests/store/test_store_url.py",
        "tests/hardening/test_key_leaks.py",
    ),
    "stellate/store/ownership.py": _STORE,
    "stellate/store/keeper.py": ("tests/store/test_keeper.py", *_STORE),
    "stellate/store/snapshot.py": _STORE,
    "stellate/store/report.py": (
        "tests/store/test_fleet_report.py",
        "tests/store/test_fleet_share.py",
    ),
    "stellate/adapters/store_memory.py": _STORE,
}

#: Modules of RULE_PARTS that are not mutated, and why.
LEFT_OUT: dict[str, str] = {
    "stellate/fsm/__init__.py": "re-exports only",
    "stellate/protocol/__init__.py": "re-exports only",
    "stellate/config/__init__.py": "re-exports only",
    "stellate/text/__init__.py": "re-exports only",
    "stellate/store/__init__.py": "re-exports only",
    "stellate/store/port.py": "the store port: a Protocol, its records and errors (no rule)",
    "stellate/fsm/diagram.py": "draws the table (layout, colours); its rules are the table's",
    "stellate/fsm/coverage.py": "the suite's own transition-coverage counter, not a rule",
    "stellate/fsm/effects.py": "declares the effect records the lifecycle returns (no logic)",
    "stellate/fsm/meaning.py": "the meanings' names (a StrEnum); the table says which row has one",
    "stellate/fsm/trigger.py": "the events' names (a StrEnum): no operator of the plan applies",
    "stellate/protocol/transport.py": "the transport port: a Protocol class and one exception",
    "stellate/text/escape.py": "output escaping for terminals and logs, not a registration rule",
}


class Excluded(NamedTuple):
    """An equivalent mutant: ``operator`` (a regex) on the line of ``module`` holding ``text``,
    which the mutant turns into a line holding ``becomes``."""

    module: str
    operator: str
    text: str
    becomes: str
    reason: str

    def matches(self, module: str, operator: str, line: str) -> bool:
        """Whether the mutant's module, operator and original line match (then check
        ``becomes`` against its mutated line)."""
        return (
            module == self.module
            and re.fullmatch(self.operator, operator) is not None
            and self.text in line.strip()
        )


EXCLUDED: tuple[Excluded, ...] = (
    Excluded(
        "stellate/text/urls.py",
        "NumberReplacer",
        "end = len(head) if end < 0 else end",
        "end < 1",
        "find() from start >= 3 returns -1 or at least 3: end < 0 and end < 1 agree",
    ),
    Excluded(
        "stellate/fsm/checks.py",
        "NumberReplacer",
        'close = row.get("close", 1000)',
        "1001",
        "a row without a close code is checked as 1000; 1001 is as valid, so the check agrees",
    ),
    Excluded(
        "stellate/config/findings.py",
        "NumberReplacer",
        "difflib.get_close_matches(key, known, n=1)",
        "n= 2",
        "the closest match comes first: the first of two is the one of one",
    ),
    Excluded(
        "stellate/config/findings.py",
        "NumberReplacer",
        "did you mean {close[0]!r}?",
        "close[ -1]",
        "close holds at most one match (n=1): its first is its last",
    ),
    Excluded(
        "stellate/config/findings.py",
        "ReplaceUnaryOperator_USub_UAdd",
        "path[-1] in SECRET_FIELDS",
        "path[+1]",
        "the one secret field is manager.api_key, two deep: path[1] is path[-1] there",
    ),
    Excluded(
        "stellate/protocol/closing.py",
        "ReplaceComparisonOperator_LtE_Lt",
        "if len(data) <= MAX_REASON_BYTES:",
        "<",
        "a reason of exactly 123 bytes cut to 123 bytes is itself",
    ),
    Excluded(
        "stellate/config/budget.py",
        "NumberReplacer",
        "data = file.read(limits.max_bytes + 1)",
        "+ 2",
        "one byte past the limit or two: a file that long is larger than the limit either way",
    ),
    Excluded(
        "stellate/config/budget.py",
        "NumberReplacer",
        "cap = limits.max_nodes + 1",
        "+ 2",
        "the cap only stops counting past the limit: at max+1 or max+2 the count is over",
    ),
    Excluded(
        "stellate/fsm/lifecycle.py",
        "NumberReplacer",
        "self._wait: tuple[float, float] = (0.0, 0.0)",
        "",
        "every row into backoff sets the wait (its callback) before the deadline reads it",
    ),
    Excluded(
        "stellate/fsm/lifecycle.py",
        "NumberReplacer",
        "self._retry_after = 0.0",
        "",
        "entering backoff sets the Retry-After floor before the deadline reads it",
    ),
    Excluded(
        "stellate/fsm/lifecycle.py",
        "NumberReplacer",
        "if retry_after is not None else 0.0",
        "-1.0",
        "the drawn wait is never negative: a floor of 0 or of -1 leaves it as drawn",
    ),
    Excluded(
        "stellate/fsm/lifecycle.py",
        "NumberReplacer",
        "event.args[0]",
        "args[ -1]",
        "fire passes one argument, the event's data: its first is its last",
    ),
    Excluded(
        "stellate/fsm/lifecycle.py",
        "NumberReplacer",
        "getattr(self.timing, deadline.settings[0])",
        "settings[ -1]",
        "a fixed deadline names exactly one setting (checks.py refuses any other)",
    ),
    Excluded(
        "stellate/fsm/lifecycle.py",
        "NumberReplacer",
        "self._wait = self.timing.backoff_bounds(0)",
        "",
        "backoff_bounds reads 0, 1 and -1 failures alike (the first step, max(n, 1) - 1)",
    ),
    Excluded(
        "stellate/fsm/lifecycle.py",
        "NumberReplacer",
        "max(lost + self.timing.recovery_window - self._now(), 0.0)",
        "-1.0",
        "the row into backoff needs the window open, so the time left is not negative but on a "
        "clock read later; a wait of 0 or -1 both end at once",
    ),
    Excluded(
        "stellate/fsm/lifecycle.py",
        "ReplaceFalseWithTrue",
        "row: Row = attrs.field(kw_only=True, eq=False, repr=False)",
        "repr=True",
        "text only: whether a record's repr shows its row",
    ),
    Excluded(
        "stellate/fsm/lifecycle.py",
        "ReplaceTrueWithFalse",
        "row: Row = attrs.field(kw_only=True, eq=False, repr=False)",
        "kw_only=False",
        "every caller passes the row by keyword, the last field",
    ),
    Excluded(
        "stellate/protocol/ids.py",
        "RemoveDecorator",
        "@functools.cache",
        "",
        "the cache saves reading the confusables data again; every read gives the same table",
    ),
    Excluded(
        "stellate/store/keeper.py",
        "NumberReplacer",
        "len(self.units.get(unit, ())) or 1",
        "",
        "a unit claimed, held or given back is one of the fleet's, with at least one device: "
        "the `or` never applies",
    ),
    Excluded(
        "stellate/store/keeper.py",
        "NumberReplacer",
        "max(0.0, min(wait, expiry - now))",
        "-1.0",
        "the next expiry counts only units acted on now (now < until): expiry - now > 0",
    ),
    Excluded(
        "stellate/fsm/states.py",
        "NumberReplacer",
        "return self.settings[0]",
        "settings[ -1]",
        "a fixed deadline names exactly one setting (checks.py refuses any other)",
    ),
    *(
        Excluded(
            "stellate/text/redact.py",
            "NumberReplacer|ReplaceUnaryOperator_USub_UAdd",
            "needles = {json.dumps(form)[1:-1] for secret",
            cut,
            "the needles only decide whether to walk the value: a needle cut shorter (or empty) "
            "is found wherever the whole one is, and the walk masks the same",
        )
        for cut in ("[ 2:-1]", "[1:- 2]", "[1:+1]", "[1:- 0]")
    ),
    Excluded(
        "stellate/text/redact.py",
        "ReplaceFalseWithTrue",
        "return json.dumps(_redacted(value, secrets), allow_nan=False, **dumps)",
        "allow_nan=True",
        "the walk has already written every NaN and infinity as null",
    ),
    Excluded(
        "stellate/config/budget.py",
        "NumberReplacer",
        'raise OverBudget(0, (), "is a directory, not a YAML file")',
        "",
        "dead: os.fdopen refuses a directory (IsADirectoryError, which loader.py words the "
        "same) before this check is reached",
    ),
    Excluded(
        "stellate/config/budget.py",
        "ReplaceBinaryOperator_BitOr_BitAnd",
        "_path: list[str | int]",
        "",
        "the annotation of a plain class's field is never evaluated (from __future__ import "
        "annotations; attrs classes' are, and stay mutated)",
    ),
    # Text only: how much of a value a message quotes, and its plural.
    Excluded(
        "stellate/protocol/codec.py",
        "NumberReplacer|ReplaceComparisonOperator_.*|ReplaceBinaryOperator_.*",
        'return text if len(text) <= 60 else text[:57] + "..."',
        "",
        "text only: how much of a frame an error message quotes",
    ),
    Excluded(
        "stellate/protocol/codec.py",
        "NumberReplacer|ReplaceComparisonOperator_.*|ReplaceBinaryOperator_.*",
        'shown = text if len(text) <= 40 else text[:37] + "..."',
        "",
        "text only: how much of a value an error message quotes",
    ),
    Excluded(
        "stellate/protocol/ids.py",
        "NumberReplacer",
        "limit=80)",
        "",
        "text only: how much of an id a refusal quotes",
    ),
    Excluded(
        "stellate/config/model.py",
        "NumberReplacer",
        "escape_text(repr(value), limit=80)",
        "",
        "text only: how much of a refused value a config problem quotes",
    ),
    Excluded(
        "stellate/config/problems.py",
        "NumberReplacer|ReplaceComparisonOperator_Eq_NotEq",
        "problem{'' if count == 1 else 's'}",
        "",
        "text only: the plural of 'problem' in the header",
    ),
)

_ARITHMETIC = {
    "Add": ("Sub", "Mul"),
    "Sub": ("Add", "Mul"),
    "Mul": ("Div", "Add"),
    "Div": ("Mul", "FloorDiv"),
    "FloorDiv": ("Div",),
    "Mod": ("FloorDiv",),
    "Pow": ("Mul",),
    "BitOr": ("BitAnd",),
    "BitAnd": ("BitOr",),
    "BitXor": ("BitOr",),
}
_RELATIONAL = {
    "Lt": ("LtE", "GtE"),
    "LtE": ("Lt", "Gt"),
    "Gt": ("GtE", "LtE"),
    "GtE": ("Gt", "Lt"),
    "Eq": ("NotEq",),
    "NotEq": ("Eq",),
    "Is": ("IsNot",),
    "IsNot": ("Is",),
}

#: The operators kept (full names, as cosmic-ray lists them).
OPERATORS: frozenset[str] = frozenset(
    [f"core/ReplaceBinaryOperator_{a}_{b}" for a, bs in _ARITHMETIC.items() for b in bs]
    + [f"core/ReplaceComparisonOperator_{a}_{b}" for a, bs in _RELATIONAL.items() for b in bs]
    + [
        "core/ReplaceUnaryOperator_Delete_Not",
        "core/ReplaceUnaryOperator_USub_UAdd",
        "core/AddNot",
        "core/ReplaceTrueWithFalse",
        "core/ReplaceFalseWithTrue",
        "core/ReplaceAndWithOr",
        "core/ReplaceOrWithAnd",
        "core/ReplaceBreakWithContinue",
        "core/ReplaceContinueWithBreak",
        "core/NumberReplacer",
        "core/RemoveDecorator",
        "core/ZeroIterationForLoop",
        "core/ExceptionReplacer",
    ]
)
