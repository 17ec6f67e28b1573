# dealcast: `make help` lists the targets. Every target creates the virtual environment itself.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORLD ?= worlds/default
OPPORTUNITIES ?= 20000
SEED ?= 1

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: install
install: $(VENV)/.installed ## create .venv and install dealcast with its dev extra

.PHONY: run
run: $(VENV)/.installed ## main job: generate the synthetic world, validate it, train and register a champion
	$(BIN)/dealcast generate --out $(WORLD) --opportunities $(OPPORTUNITIES) --seed $(SEED)
	$(BIN)/dealcast validate $(WORLD)
	$(BIN)/dealcast train --data $(WORLD)

.PHONY: lint
lint: $(VENV)/.installed ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: browser
browser: ## headless Chromium from Debian's packages, for the manager page's browser tests
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing and this is not root: the page's browser tests will skip"; fi; }

.PHONY: test
test: lint browser ## lint, type-check and run the whole test suite
	$(BIN)/python -m pytest

.PHONY: bench
bench: $(VENV)/.installed ## run the benchmarks and record their figures in benchmarks/results/
	$(BIN)/python benchmarks/generate_world.py
	$(BIN)/python benchmarks/snapshot_features.py --opportunities 100000
	$(BIN)/python benchmarks/one_deal_features.py

.PHONY: docs
docs: $(VENV)/.installed ## rewrite the README's feature catalog from features/catalog.py
	$(BIN)/python -m features.catalog README.md

.PHONY: clean
clean: ## remove generated worlds, caches and the virtual environment
	rm -rf $(VENV) worlds .pytest_cache .mypy_cache .ruff_cache
