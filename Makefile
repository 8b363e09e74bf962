# Two commands set up everything: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow chromium bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bayesude run workflows/current_clamp_cells.yaml

# The suite runs in two processes: one process compiling every test's programs
# accumulated enough machine code for XLA's compiler to crash late in the run.
TEST_FILES := $(sort $(wildcard tests/test_*.py))
TEST_FILES_FIRST := $(wordlist 1,15,$(TEST_FILES))
TEST_FILES_REST := $(wordlist 16,1000,$(TEST_FILES))

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(TEST_FILES_FIRST)
	$(VENV)/bin/python -m pytest $(TEST_FILES_REST)

test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -m slow

# Debian's Chromium, for the report's browser test (needs root and apt).
chromium:
	command -v chromium >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# Side-by-side benchmark against Stan (PyStan), NumPyro + Diffrax and NumPyro +
# odeint; writes results/bench/*.jsonl. BENCH_ARGS=--quick for a smoke run.
$(VENV)/.installed-bench: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e '.[test,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(VENV)/bin/python benchmarks/bench.py $(BENCH_ARGS)

bench-quick: $(VENV)/.installed-bench
	$(VENV)/bin/python benchmarks/bench.py --quick

clean:
	rm -rf $(VENV) results
