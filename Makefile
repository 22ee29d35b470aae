# stellate — every target sets itself up: a fresh machine needs only Python 3.11 and pip.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-thorough test-slice mutate mutate-slice lint typecheck bench docs clean

# stellate needs Python 3.11 or newer: checked before a venv is made (an older one would leave a
# broken .venv behind), and for a .venv made earlier by another Python.
PY_OK := import sys; sys.exit(sys.version_info < (3, 11))

$(STAMP): pyproject.toml
	@$(PYTHON) -c '$(PY_OK)' 2>/dev/null || { \
		echo "stellate needs Python 3.11 or newer, but $(PYTHON) is $$($(PYTHON) --version 2>&1)."; \
		echo "Run again with a newer one, e.g.: make PYTHON=python3.11 $(MAKECMDGOALS)"; exit 1; }
	@if [ -x $(PY) ] && ! $(PY) -c '$(PY_OK)' 2>/dev/null; then \
		echo "$(VENV) was made with $$($(PY) --version 2>&1); stellate needs 3.11 or newer."; \
		echo "Remove it (make clean) and run again with a newer Python."; exit 1; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

## make run: the example fleet in embedded mode (an agent server and one agent per device on
## 127.0.0.1), kept up until Ctrl-C; `make run ARGS=--once` stops once every device settled.
run: $(STAMP)
	$(VENV)/bin/stellate up --embedded $(ARGS)

## make test: lint, types, then the whole suite.
test: $(STAMP) lint typecheck
	STELLATE_COVERAGE_STRICT=1 $(PY) -m pytest $(PYTEST_ARGS)

## make test-thorough [SEED=N]: the whole suite with random examples, 10x as many (profile
## `thorough`, tests/profiles.py). Its hypothesis seed is printed; SEED=N replays that run.
## make test-slice [SEED=N]: the property tests only, random, 3x the examples (profile `ci`): the
## bounded slice .ci/run adds after `make test`.
SLICE := tests/harness tests/fsm tests/protocol tests/store tests/config/test_config_roundtrip.py examples
NEW_SEED := $(PY) -c 'import secrets; print(secrets.randbelow(2**32))'

test-thorough: $(STAMP)
	@seed=$(SEED); seed=$${seed:-$$($(NEW_SEED))}; \
	echo "hypothesis seed $$seed (replay: make test-thorough SEED=$$seed)"; \
	HYPOTHESIS_PROFILE=thorough STELLATE_COVERAGE_STRICT=1 \
		$(PY) -m pytest --hypothesis-seed=$$seed $(PYTEST_ARGS)

test-slice: $(STAMP)
	@seed=$(SEED); seed=$${seed:-$$($(NEW_SEED))}; \
	echo "hypothesis seed $$seed (replay: make test-slice SEED=$$seed)"; \
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest --hypothesis-seed=$$seed $(SLICE) $(PYTEST_ARGS)

## make mutate [SAMPLE=N] [SEED=S] [BUDGET=seconds] [MODULES="stellate/timing.py ..."]: mutation
## testing of the rule-bearing modules (tests/mutation/mutation_plan.py) with cosmic-ray, two
## workers, each mutant against the tests that execute its line; prints the score per module
## and lists every survivor. SAMPLE=12 mutants per module by default (drawn by a seed it
## prints; SEED=S replays), SAMPLE=0 every mutant (docs/testing.md gives the times).
## make mutate-slice: the bounded slice .ci/run adds: 3 mutants per module, a fresh seed.
MUTATE := $(PY) tests/mutation/mutate.py
SAMPLE ?= 12

mutate: $(STAMP)
	$(MUTATE) --sample $(SAMPLE) $(if $(SEED),--seed $(SEED)) $(if $(BUDGET),--budget $(BUDGET)) \
		$(MODULES)

mutate-slice: $(STAMP)
	$(MUTATE) --sample 3 --budget 900 $(if $(SEED),--seed $(SEED))

lint: $(STAMP)
	$(VENV)/bin/ruff check stellate tests benchmarks examples
	$(VENV)/bin/ruff format --check stellate tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

## make bench [QUICK=1]: benchmarks print a table and write JSON to benchmarks/results/.
bench: $(STAMP)
	$(PY) -m benchmarks $(if $(QUICK),--quick,)

## make docs: redraw the parts of the docs generated from the code (the state diagram; needs
## graphviz's dot: apt-get install graphviz).
docs: $(STAMP)
	$(PY) tests/docs/generated_docs.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .mutate
