# Two commands start a newcomer: `make demo` and `make test`. Both set themselves up.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all install test lint typecheck pytest demo rabbitmq schema bench clean lock test-lowest promtool

all: test

$(STAMP): pyproject.toml client/pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./client -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# Extras beyond the tests: `bench` (the profiler) and `dev` (pre-commit, uv for `make lock`, build).
$(VENV)/.installed-%: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ./client -e '.[test,$*]'
	@touch $@

rabbitmq:
	@.ci/ensure-rabbitmq

# promtool (Prometheus' rule checker) for tests/deploy/test_promtool.py, which skips without it. Debian's
# `prometheus` package ships it as /usr/bin/promtool.
promtool:
	@command -v promtool >/dev/null || apt-get install -y --no-install-recommends prometheus
	@promtool --version | head -1

lint: $(STAMP)
	$(BIN)/ruff check bridge client tests bench examples
	$(BIN)/ruff format --check bridge client tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict bridge client/src examples

pytest: $(STAMP) rabbitmq
	PYTHONASYNCIODEBUG=1 $(BIN)/pytest

test: lint typecheck pytest

schema: $(STAMP)
	$(BIN)/genesys-bridge schema --out docs/contract

demo: $(STAMP) rabbitmq
	$(BIN)/python -m bridge.demo

bench: $(VENV)/.installed-bench rabbitmq
	$(BIN)/python -m bench

# The image's dependencies, pinned with hashes, from pyproject.toml's runtime list (no extras). Run it
# after changing that list; tests/deploy/test_dockerfile.py fails while the lock is behind.
lock: $(VENV)/.installed-dev
	@# The contract package is built from client/ (and installed --no-deps in the image), not fetched.
	echo "genesys-bridge-client @ file://$(CURDIR)/client" > $(VENV)/lock-overrides.txt
	$(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes --universal --python-version 3.11 \
		--override $(VENV)/lock-overrides.txt --no-emit-package genesys-bridge-client \
		--custom-compile-command "make lock" -o requirements.lock

# The floors in pyproject.toml, proven: a fresh venv with every direct dependency at the lowest version
# it allows (test tools included), then every test that needs neither RabbitMQ nor the package index
# (`broker` and `slow` are markers: tests/README.md). Not part of `make test`.
LOWEST := .venv-lowest
test-lowest:
	rm -rf $(LOWEST)
	$(PY) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet uv
	$(LOWEST)/bin/uv pip install --quiet --python $(LOWEST)/bin/python --resolution lowest-direct -e ./client -e '.[test]'
	$(LOWEST)/bin/python -m pytest -p no:cacheprovider -m "not broker and not slow"

clean:
	rm -rf $(VENV) $(LOWEST) .pytest_cache .mypy_cache .ruff_cache build dist
