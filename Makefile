# Two commands start a newcomer: `make demo` and `make test`. Both set themselves up.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all install test lint typecheck pytest demo rabbitmq schema bench clean

all: test

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

rabbitmq:
	@.ci/ensure-rabbitmq

lint: $(STAMP)
	$(BIN)/ruff check bridge tests bench
	$(BIN)/ruff format --check bridge tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict bridge

pytest: $(STAMP) rabbitmq
	PYTHONASYNCIODEBUG=1 $(BIN)/pytest

test: lint typecheck pytest

schema: $(STAMP)
	$(BIN)/genesys-bridge schema --out docs/contract

demo: $(STAMP) rabbitmq
	$(BIN)/python -m bridge.demo

bench: $(STAMP) rabbitmq
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
