# Two commands start a newcomer: `make demo` and `make test`. Both set themselves up.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all install test lint typecheck pytest demo rabbitmq schema asyncapi-html bench clean lock test-lowest promtool

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
	$(BIN)/mypy --strict bridge client/src examples bench

pytest: $(STAMP) rabbitmq
	PYTHONASYNCIODEBUG=1 $(BIN)/pytest

test: lint typecheck pytest

schema: $(STAMP)
	$(BIN)/genesys-bridge schema --out docs/contract

# docs/contract/asyncapi.html: the AsyncAPI document as one self-contained page (styles and scripts
# inline, nothing fetched when it is opened). Needs Node.js 20+ and npm; not part of `make test`, and
# tests/contract/test_asyncapi_html.py only reads the result. Run it after `make schema` changes
# asyncapi.json. The generator is 2.x because 3.x needs Node.js 24; the template is handed to it as a
# path inside the npx install, so generating fetches nothing (and works offline once npx has cached
# the two packages). PUPPETEER_SKIP_DOWNLOAD: the template's PDF option would download a browser.
ASYNCAPI_GENERATOR := @asyncapi/generator@2.11.0
ASYNCAPI_HTML_TEMPLATE := @asyncapi/html-template@3.5.6
asyncapi-html:
	PUPPETEER_SKIP_DOWNLOAD=true npx --yes -p $(ASYNCAPI_GENERATOR) -p $(ASYNCAPI_HTML_TEMPLATE) -c \
		'ag docs/contract/asyncapi.json "$$(dirname "$$(command -v ag)")/../@asyncapi/html-template" \
		-o docs/contract -p singleFile=true -p outFilename=asyncapi.html --force-write --disable-warning'

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
