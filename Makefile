# facewatch — two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow test-pg lint serve bench clean

install: $(STAMP)

# The stamp makes `install` idempotent: it re-runs only when the project's requirements change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	# Pinned: these come from the machine's local cache; other versions download gigabytes.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[test]'
	# facenet-pytorch pins ancient torch/numpy; it runs on current ones, so its real needs come from us.
	$(BIN)/pip install -q --no-deps facenet-pytorch==2.6.0
	touch $(STAMP)

demo: install
	$(BIN)/facewatch demo

test: install
	$(BIN)/python -m pytest -m "not slow" -q --durations=40

test-slow: install
	$(BIN)/python -m pytest -m "slow" -q --durations=20

# Storage and API suites again on PostgreSQL (FACEWATCH_TEST_PG_URL must point at a server).
test-pg: install
	$(BIN)/python -m pytest -m "postgres or pg_capable" -q

lint: install
	$(BIN)/ruff check .

serve: install
	$(BIN)/facewatch serve

clean:
	rm -rf var .pytest_cache
