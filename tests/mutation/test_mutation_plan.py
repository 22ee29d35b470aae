"""``make mutate``'s plan and the pieces of its driver that decide what runs.

The plan (``mutation_plan.py``) must name every module of the rule-bearing parts, as a target
or as left out with a reason, and only tests that exist; the driver must run a mutant against
the tests that execute its statement, and against the module's whole list when the statement
runs at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mutate
from cosmic_ray.work_item import MutationSpec
from mutation_plan import EXCLUDED, LEFT_OUT, OPERATORS, RULE_PARTS, TARGETS

ROOT = Path(__file__).resolve().parents[2]


def _modules() -> set[str]:
    found: set[str] = set()
    for part in RULE_PARTS:
        path = ROOT / part
        files = [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))
        found |= {str(f.relative_to(ROOT)) for f in files if f.exists()}
    return found


def test_every_rule_bearing_module_is_mutated_or_left_out_with_a_reason() -> None:
    modules = _modules()
    assert modules - set(TARGETS) - set(LEFT_OUT) == set()
    assert set(TARGETS) & set(LEFT_OUT) == set()
    assert set(TARGETS) | set(LEFT_OUT) <= modules  # nothing listed that is gone
    assert all(reason.strip() for reason in LEFT_OUT.values())


def test_every_listed_test_exists() -> None:
    for module, tests in TARGETS.items():
        assert tests, module
        for test in tests:
            assert (ROOT / test).is_file(), f"{module}: {test}"


def test_exclusions_name_a_module_of_the_plan_and_why() -> None:
    for entry in EXCLUDED:
        assert entry.module in TARGETS and entry.reason.strip() and entry.text.strip()
        source = (ROOT / entry.module).read_text(encoding="utf-8")
        assert entry.text in source, f"{entry.module}: no line holds {entry.text!r}"


def test_the_operators_kept_are_cosmic_ray_s() -> None:
    import cosmic_ray.plugins

    assert set(OPERATORS) <= set(cosmic_ray.plugins.operator_names())


def _mutant(module: str, line: int, column: int, operator: str) -> mutate.Mutant:
    spec = MutationSpec(module, f"core/{operator}", 0, (line, column), (line, column + 1))
    return mutate.Mutant(module, spec)


def test_the_keyword_only_star_is_no_product() -> None:
    lines = ["def f(a, *, b):", "    return a * b"]
    star = _mutant("m.py", 1, 9, "ReplaceBinaryOperator_Mul_Div")
    product = _mutant("m.py", 2, 13, "ReplaceBinaryOperator_Mul_Div")
    assert mutate.not_an_operator(star, lines)
    assert not mutate.not_an_operator(product, lines)


SOURCE = """\
LIMIT = 3


def check(value):
    if (
        value > LIMIT
        and value < 10
    ):
        return 1
    return 0
"""


def test_a_mutant_runs_against_the_tests_that_execute_its_statement() -> None:
    spans = mutate.statement_lines(SOURCE)
    assert spans[7] == range(5, 9)  # the if's header, over its four lines
    assert spans[9] == range(9, 10)
    module = "stellate/timing.py"
    cov = mutate.Coverage(
        {module: {5: ["t.py::slow", "t.py::fast"], 9: ["t.py::fast"], 1: [""]}},
        {"t.py::slow": 2.0, "t.py::fast": 0.1, f"{TARGETS[module][0]}::x": 1.0},
    )
    # a mutant on the header's third line runs the tests that executed the header, fastest first
    assert mutate.tests_for(
        _mutant(module, 7, 14, "ReplaceComparisonOperator_Lt_LtE"), cov, spans
    ) == [
        "t.py::fast",
        "t.py::slow",
    ]
    # a line no test executes: no test can kill it
    assert mutate.tests_for(_mutant(module, 10, 11, "NumberReplacer"), cov, spans) == []
    # a line run at import time: what it builds reaches every test of the module's list
    at_import = mutate.tests_for(_mutant(module, 1, 8, "NumberReplacer"), cov, spans)
    assert sorted(at_import) == sorted(TARGETS[module])


ANNOTATED = """\
from __future__ import annotations


class Config:
    port: int | None = None


def parse(text: str | bytes, *, limit: int | None = None) -> dict[str, int] | None:
    found: list[int] | None = None
    return {"n": 1 | 2}
"""


def test_annotations_never_evaluated_make_no_mutants() -> None:
    spans = mutate.annotation_spans(ANNOTATED)
    m = "m.py"
    assert mutate.in_annotation(_mutant(m, 8, 20, "ReplaceBinaryOperator_BitOr_BitAnd"), spans)
    assert mutate.in_annotation(_mutant(m, 8, 43, "ReplaceBinaryOperator_BitOr_BitAnd"), spans)
    assert mutate.in_annotation(_mutant(m, 8, 76, "ReplaceBinaryOperator_BitOr_BitAnd"), spans)
    assert mutate.in_annotation(_mutant(m, 9, 21, "ReplaceBinaryOperator_BitOr_BitAnd"), spans)
    # a class field's annotation is resolved by attrs/cattrs; an expression is code
    assert not mutate.in_annotation(_mutant(m, 5, 14, "ReplaceBinaryOperator_BitOr_BitAnd"), spans)
    assert not mutate.in_annotation(_mutant(m, 10, 19, "ReplaceBinaryOperator_BitOr_BitAnd"), spans)


def test_an_exclusion_takes_only_the_mutant_it_names(tmp_path: Path, monkeypatch: Any) -> None:
    # the urls.py entry: of the two numbers the line's 0 becomes, only "end < 1" is equivalent
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(mutate, "WORK", tmp_path)
    module = "stellate/text/urls.py"
    source = (ROOT / module).read_text(encoding="utf-8")
    lines = source.splitlines()
    on_line = [
        m
        for m in mutate.mutants_of(module)
        if "end = len(head) if end < 0 else end" in lines[m.line - 1]
        and m.operator == "NumberReplacer"
    ]
    reasons = [mutate.exclusion(m, source) for m in on_line]
    assert len(on_line) == 2 and sum(r is not None for r in reasons) == 1
