# The two commands a newcomer needs: `make serve` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned to the build this project trains with; a bare `torch` would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: serve test lint setup setup-dev system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.serve: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH) -e '.[train,dev]'
	touch $@ $(VENV)/.serve

setup: $(VENV)/.serve
setup-dev: $(VENV)/.dev

## serve on the embedded default model (CPU is fine): http://localhost:8000
serve: setup
	COLORIZER_HOST=$${COLORIZER_HOST:-0.0.0.0} $(BIN)/colorizer serve

## Debian packages the tests use, installed when missing (needs root or sudo):
## chromium for the browser test, prometheus for promtool (checks the Prometheus config and dashboard queries)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-deps:
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	  command -v promtool >/dev/null || missing="$$missing prometheus"; \
	  if [ -n "$$missing" ]; then $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends $$missing; fi

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict app
	$(BIN)/mypy train
	$(BIN)/mypy bench

## set up everything and run every check and test
test: setup-dev system-deps lint
	$(BIN)/python -m pytest -q
