# memo_pipeline: every target sets up .venv first (idempotent), then does its one thing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MEMO_HOME ?= $(CURDIR)/.memo

DATA ?= examples/input
FORMAT ?= jsonl
PROVIDER ?=
EMULATOR ?=
ARGS ?=

.PHONY: setup run test ui demo-modes lint format stop clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned to the CPU build; an unpinned resolve pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: setup
	$(if $(EMULATOR),$(BIN)/python scripts/with_emulator.py --) \
		$(BIN)/memo-pipeline run --data "$(DATA)" --format "$(FORMAT)" \
		$(if $(PROVIDER),--provider $(PROVIDER)) $(ARGS)

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest $(ARGS)

ui: setup
	$(BIN)/memo-pipeline ui

# The intake service, the emulator (Anthropic), the Dagster daemon and a webhook receiver: 20
# writes in each execution mode, each followed to 'stored' and a verified webhook.
demo-modes: setup
	$(BIN)/memo-pipeline demo-modes

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

stop: setup
	$(BIN)/memo-pipeline db stop

clean:
	-$(BIN)/memo-pipeline db stop
	rm -rf $(MEMO_HOME)
