"""``make mutate``: mutation testing of the rule-bearing modules, with cosmic-ray.

Each mutant is one change to one module (``<`` for ``<=``, a number off by one, ``and`` for
``or``, …), written into the module's file in a copy of the tree; the tests that cover the
module then run in a fresh ``python -m pytest -x`` on that copy. A mutant the tests fail on is
killed; one they pass on survived: either a test is missing, or the changed line makes no
difference (dead code, or an equivalent mutant, listed in ``mutation_plan.EXCLUDED``). Because
the file is rewritten and every run imports it anew, everything the module builds when it is
imported (the transition table, compiled patterns, the converter's hooks, constants) is built
from the mutated source: every mutant counted was live while the tests ran.

Two workers (``--jobs``), each with its own copy of the tree under ``.mutate/``, take mutants
from one queue. ``--sample N`` draws N mutants per module at random (its seed is printed;
``--seed`` replays it); ``--budget S`` starts no mutant after S seconds (those left are counted
as not run). The report gives, per module, the mutants killed, survived and excluded and the
score (killed / (killed + survived)), then every survivor with its line before and after.

    python tests/mutation/mutate.py [--sample N] [--seed S] [--budget S] [--jobs J] [MODULE...]
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import json
import os
import queue
import random
import secrets
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cosmic_ray.plugins
import coverage
from cosmic_ray.commands.init import init as cr_init
from cosmic_ray.mutating import mutate_and_test, mutate_code
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import MutationSpec, TestOutcome, WorkerOutcome
from mutation_plan import EXCLUDED, OPERATORS, TARGETS

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".mutate"
PYTHON = sys.executable


@dataclass(frozen=True)
class Mutant:
    module: str
    spec: MutationSpec

    @property
    def operator(self) -> str:
        return self.spec.operator_name.removeprefix("core/")

    @property
    def line(self) -> int:
        return int(self.spec.start_pos[0])


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed | survived | timeout | error
    seconds: float
    detail: str = ""


@dataclass
class ModuleReport:
    module: str
    generated: int = 0
    excluded: list[tuple[Mutant, str]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    not_run: int = 0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def score(self) -> float | None:
        killed = self.count("killed") + self.count("timeout")
        judged = killed + self.count("survived")
        return 100.0 * killed / judged if judged else None


def mutants_of(module: str) -> list[Mutant]:
    """Every mutant cosmic-ray makes of ``module`` with the operators of the plan."""
    path = WORK / f"init-{uuid.uuid4().hex}.sqlite"
    with use_db(str(path), WorkDB.Mode.create) as db:
        cr_init([Path(module)], db, {})
        found = [
            Mutant(module, mutation)
            for item in db.work_items
            for mutation in item.mutations
            if mutation.operator_name in OPERATORS
        ]
    path.unlink()
    return sorted(found, key=lambda m: (m.line, m.spec.start_pos[1], m.operator))


def exclusion(mutant: Mutant, source: str) -> str | None:
    """The reason ``mutant`` is excluded (an equivalent mutant of the plan), or None."""
    text = source.splitlines()[mutant.line - 1]
    for entry in EXCLUDED:
        if entry.matches(mutant.module, mutant.operator, text):
            added = [d for d in mutated_line(mutant, source).splitlines() if d.startswith("+")]
            if any(entry.becomes in line for line in added):
                return entry.reason
    return None


def mutated_line(mutant: Mutant, source: str) -> str:
    """The mutated lines of ``source``, as ``-``/``+`` diff lines."""
    operator = cosmic_ray.plugins.get_operator(mutant.spec.operator_name)()
    changed = mutate_code(source, operator, mutant.spec.occurrence)
    if changed is None:
        return "(no change)"
    diff = difflib.unified_diff(source.splitlines(), changed.splitlines(), n=0, lineterm="")
    return "\n".join(
        line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )


def copy_tree(dest: Path) -> None:
    """The working tree's files (tracked or not ignored) copied to ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if name.startswith(".mutate/") or not source.is_file():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def test_command(copy: Path, tests: Iterable[str]) -> str:
    """The command judging a mutant in ``copy``: its own tree first on the path."""
    return " ".join(
        [
            "env",
            "-C",
            str(copy),
            f"PYTHONPATH={copy}",
            "HYPOTHESIS_PROFILE=stellate",
            PYTHON,
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            *(shlex.quote(test) for test in tests),
        ]
    )


@dataclass
class Coverage:
    """Which tests execute each line of each module (``""``: a line run at import time), and
    how long each test takes."""

    lines: dict[str, dict[int, list[str]]]
    times: dict[str, float]


def tree_key(copy: Path) -> str:
    """A hash of every file the tests can see in ``copy``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in copy.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(copy)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def measure_coverage(copy: Path, modules: Sequence[str], jobs: int) -> Coverage:
    """Run the tests of ``modules`` once under coverage, each test in its own context (cached
    by the test files and a hash of the tree)."""
    files = sorted({test for module in modules for test in TARGETS[module]})
    key = hashlib.sha256(("\0".join(files) + tree_key(copy)).encode()).hexdigest()[:16]
    cached = WORK / f"coverage-{key}.json"
    if cached.exists():
        data = json.loads(cached.read_text())
        return Coverage(
            {m: {int(k): v for k, v in lines.items()} for m, lines in data["lines"].items()},
            data["times"],
        )
    shards = [shard for shard in (files[n::jobs] for n in range(jobs)) if shard]
    env = {
        **os.environ,
        "PYTHONPATH": f"{copy}{os.pathsep}{copy / 'tests' / 'mutation'}",
        "HYPOTHESIS_PROFILE": "stellate",
    }
    procs = []
    for n, shard in enumerate(shards):
        procs.append(
            subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "coverage",
                    "run",
                    f"--data-file=.coverage-mutate-{n}",
                    "--source=stellate",
                    "-m",
                    "pytest",
                    "-p",
                    "coverage_contexts",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    *shard,
                ],
                cwd=copy,
                env={**env, "STELLATE_TEST_TIMES": str(copy / f".times-{n}.json")},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    lines: dict[str, dict[int, list[str]]] = {m: {} for m in modules}
    times: dict[str, float] = {}
    for n, proc in enumerate(procs):
        output, _ = proc.communicate()
        if proc.returncode != 0:
            print(output[-4000:])
            sys.exit("the plan's tests fail without any mutant")
        times.update(json.loads((copy / f".times-{n}.json").read_text()))
        data = coverage.CoverageData(basename=str(copy / f".coverage-mutate-{n}"))
        data.read()
        for module in modules:
            found = data.contexts_by_lineno(str(copy / module))
            for line, contexts in found.items():
                lines[module].setdefault(line, []).extend(contexts)
    cached.write_text(json.dumps({"lines": lines, "times": times}))
    return Coverage(lines, times)


def statement_lines(source: str) -> dict[int, range]:
    """For each line, the lines of the innermost statement holding it (a compound statement's
    header only): coverage records a statement under one of its lines."""
    found: dict[int, range] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.stmt):
            continue
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        body = getattr(node, "body", None)
        last = body[0].lineno - 1 if body and isinstance(body, list) else node.end_lineno
        span = range(first, max(first, last or first) + 1)
        for line in span:
            if line not in found or len(span) < len(found[line]):
                found[line] = span
    return found


def tests_for(mutant: Mutant, cov: Coverage, spans: dict[int, range]) -> list[str]:
    """The tests that execute the mutated statement, fastest first; the module's whole list
    when it runs at import time (what it builds then reaches every test); none if no test
    executes it."""
    executed = cov.lines.get(mutant.module, {})
    contexts: set[str] = set()
    for line in spans.get(mutant.line, range(mutant.line, mutant.line + 1)):
        contexts.update(executed.get(line, ()))
    if "" in contexts:

        def file_time(path: str) -> float:
            return sum(t for test, t in cov.times.items() if test.startswith(path + "::"))

        return sorted(TARGETS[mutant.module], key=file_time)
    return sorted(contexts, key=lambda test: (cov.times.get(test, 0.0), test))


def check_copy(copy: Path) -> None:
    """Exit unless a test run in ``copy`` imports the copy's ``stellate``."""
    found = subprocess.run(
        [PYTHON, "-c", "import stellate; print(stellate.__file__)"],
        cwd=copy,
        env={**os.environ, "PYTHONPATH": str(copy)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).is_relative_to(copy):
        sys.exit(f"the copy's tests would import {found}, not the copy's stellate")


def judge(copy: Path, mutant: Mutant, tests: Sequence[str], timeout: float) -> Outcome:
    """Write ``mutant`` into ``copy``, run ``tests`` there, put the file back."""
    if not tests:
        return Outcome(mutant, "survived", 0.0, "no test executes this line")
    spec = MutationSpec(
        module_path=copy / mutant.module,
        operator_name=mutant.spec.operator_name,
        occurrence=mutant.spec.occurrence,
        start_pos=mutant.spec.start_pos,
        end_pos=mutant.spec.end_pos,
    )
    started = time.monotonic()
    result = mutate_and_test([spec], test_command(copy, tests), timeout)
    seconds = time.monotonic() - started
    if result.worker_outcome != WorkerOutcome.NORMAL:
        return Outcome(mutant, "error", seconds, str(result.output)[-2000:])
    if result.test_outcome == TestOutcome.SURVIVED:
        return Outcome(mutant, "survived", seconds)
    if result.output == "timeout":
        return Outcome(mutant, "timeout", seconds)
    return Outcome(mutant, "killed", seconds)


def not_an_operator(mutant: Mutant, lines: Sequence[str]) -> bool:
    """cosmic-ray takes the bare ``*`` of a parameter list (keyword-only marker) for a
    product; replacing it gives a signature, not a mutant of a rule."""
    if not mutant.operator.startswith("ReplaceBinaryOperator_Mul_"):
        return False
    line, column = mutant.spec.start_pos
    rest = lines[line - 1][column + 1 :].lstrip()
    return rest.startswith((",", ")")) or rest == ""


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where ``source`` holds type annotations the interpreter never evaluates (under ``from
    __future__ import annotations``): a function's parameters and return, and annotated
    assignments inside functions. Class-level field annotations are kept: attrs and cattrs
    resolve those (a mutant there is live)."""
    spans = []

    def add(node: ast.expr | None) -> None:
        if node is not None and node.end_lineno is not None and node.end_col_offset is not None:
            spans.append(((node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset)))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            add(node.returns)
            arguments = node.args
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
                add(arg.annotation)
            for extra in (arguments.vararg, arguments.kwarg):
                add(extra.annotation if extra else None)
            for inner in ast.walk(node):
                if isinstance(inner, ast.AnnAssign):
                    add(inner.annotation)
    return spans


def in_annotation(mutant: Mutant, spans: Sequence[tuple[tuple[int, int], tuple[int, int]]]) -> bool:
    """cosmic-ray mutates annotations too; one the interpreter never evaluates is no mutant."""
    at = (mutant.spec.start_pos[0], mutant.spec.start_pos[1])
    return any(start <= at < end for start, end in spans)


def run(
    modules: Sequence[str], *, sample: int, seed: int, budget: float | None, jobs: int
) -> list[ModuleReport]:
    WORK.mkdir(exist_ok=True)
    rng = random.Random(seed)
    reports: dict[str, ModuleReport] = {}
    todo: list[Mutant] = []
    spans: dict[str, dict[int, range]] = {}
    for module in modules:
        report = reports[module] = ModuleReport(module)
        source = (ROOT / module).read_text(encoding="utf-8")
        lines = source.splitlines()
        spans[module] = statement_lines(source)
        annotations = annotation_spans(source)
        mutants = [
            m
            for m in mutants_of(module)
            if not not_an_operator(m, lines) and not in_annotation(m, annotations)
        ]
        report.generated = len(mutants)
        kept = []
        for mutant in mutants:
            reason = exclusion(mutant, source)
            if reason is None:
                kept.append(mutant)
            else:
                report.excluded.append((mutant, reason))
        if sample and len(kept) > sample:
            kept = sorted(rng.sample(kept, sample), key=lambda m: m.line)
        todo += kept

    copies = [WORK / f"tree-{n}" for n in range(jobs)]
    for copy in copies:
        copy_tree(copy)
        check_copy(copy)
    started = time.monotonic()
    cov = measure_coverage(copies[0], modules, jobs)
    print(f"  the modules' tests under coverage: {time.monotonic() - started:.0f} s", flush=True)

    def timeout(tests: Sequence[str]) -> float:
        files = [t for t in tests if "::" not in t]
        total = sum(
            seconds
            for test, seconds in cov.times.items()
            if test in tests or any(test.startswith(f + "::") for f in files)
        )
        return 3 * total + 30.0

    work: queue.Queue[tuple[Mutant, list[str]]] = queue.Queue()
    for mutant in todo:
        work.put((mutant, tests_for(mutant, cov, spans[mutant.module])))
    done: queue.Queue[Outcome] = queue.Queue()
    started = time.monotonic()
    stop = threading.Event()

    def worker(copy: Path) -> None:
        while not stop.is_set():
            if budget is not None and time.monotonic() - started > budget:
                return
            try:
                mutant, tests = work.get_nowait()
            except queue.Empty:
                return
            done.put(judge(copy, mutant, tests, timeout(tests)))

    threads = [threading.Thread(target=worker, args=(copy,), daemon=True) for copy in copies]
    for thread in threads:
        thread.start()
    finished = 0
    try:
        while any(t.is_alive() for t in threads) or not done.empty():
            try:
                outcome = done.get(timeout=1.0)
            except queue.Empty:
                continue
            finished += 1
            reports[outcome.mutant.module].outcomes.append(outcome)
            mark = {"killed": ".", "timeout": "t", "survived": "S", "error": "E"}[outcome.status]
            print(mark, end="\n" if finished % 80 == 0 else "", flush=True)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    print()
    for mutant, _tests in list(work.queue):
        reports[mutant.module].not_run += 1
    return list(reports.values())


def render(reports: Sequence[ModuleReport], *, seconds: float, header: str) -> str:
    out = [header, ""]
    out.append(
        f"{'module':36} {'mutants':>7} {'run':>5} {'killed':>6} {'surv.':>5} "
        f"{'excl.':>5} {'score':>7}"
    )
    total: Counter[str] = Counter()
    for report in reports:
        killed = report.count("killed") + report.count("timeout")
        survived = report.count("survived")
        score = report.score
        total.update(killed=killed, survived=survived, run=len(report.outcomes))
        out.append(
            f"{report.module:36} {report.generated:7} {len(report.outcomes):5} {killed:6} "
            f"{survived:5} {len(report.excluded):5} "
            + (f"{score:6.1f}%" if score is not None else "      -")
        )
    judged = total["killed"] + total["survived"]
    overall = f"{100.0 * total['killed'] / judged:.1f} %" if judged else "-"
    out.append(
        f"\n{total['run']} mutants run in {seconds:.0f} s: {total['killed']} killed, "
        f"{total['survived']} survived; score {overall}"
    )
    not_run = sum(r.not_run for r in reports)
    if not_run:
        out.append(f"{not_run} mutants not run (the time budget ran out)")
    errors = [o for r in reports for o in r.outcomes if o.status == "error"]
    for outcome in errors:
        out.append(f"ERROR {outcome.mutant.module}:{outcome.mutant.line}: {outcome.detail}")
    survivors = [o for r in reports for o in r.outcomes if o.status == "survived"]
    if survivors:
        out.append("\nsurvivors (a missing test, dead code, or an equivalent mutant):")
    for outcome in sorted(survivors, key=lambda o: (o.mutant.module, o.mutant.line)):
        mutant = outcome.mutant
        source = (ROOT / mutant.module).read_text(encoding="utf-8")
        note = f" ({outcome.detail})" if outcome.detail else ""
        out.append(f"  {mutant.module}:{mutant.line} {mutant.operator}{note}")
        out += [f"      {line}" for line in mutated_line(mutant, source).splitlines()]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help="modules of the plan (default: all)")
    parser.add_argument("--sample", type=int, default=0, help="mutants per module (0: all)")
    parser.add_argument("--seed", type=int, default=None, help="the sample's seed")
    parser.add_argument("--budget", type=float, default=None, help="seconds; then stop")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    unknown = [m for m in args.modules if m not in TARGETS]
    if unknown:
        parser.error(f"not in tests/mutation/mutation_plan.py TARGETS: {', '.join(unknown)}")
    modules = args.modules or list(TARGETS)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    replay = f"--seed {seed}" + (f" --sample {args.sample}" if args.sample else "")
    header = (
        f"mutation testing: {len(modules)} modules, "
        + (f"{args.sample} mutants each at random" if args.sample else "every mutant")
        + f", seed {seed} (replay: python tests/mutation/mutate.py {replay})"
    )
    print(header, flush=True)
    started = time.monotonic()
    reports = run(modules, sample=args.sample, seed=seed, budget=args.budget, jobs=args.jobs)
    print(render(reports, seconds=time.monotonic() - started, header=header))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    r.module: {
                        "generated": r.generated,
                        "run": len(r.outcomes),
                        "killed": r.count("killed") + r.count("timeout"),
                        "survived": r.count("survived"),
                        "excluded": len(r.excluded),
                        "survivors": [
                            [o.mutant.line, o.mutant.operator]
                            for o in r.outcomes
                            if o.status == "survived"
                        ],
                    }
                    for r in reports
                },
                indent=1,
            )
        )
    errors = any(o.status == "error" for r in reports for o in r.outcomes)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
