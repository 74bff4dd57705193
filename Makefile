# Everything a fresh machine (Python 3.11, make, git) needs: `make demo` and `make test`.
# uv is bootstrapped into .tools/ with the system Python; the project's environment (.venv)
# is synced from uv.lock, so every machine and CI run gets the same versions.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/uv/bin/uv
VENV := .venv
SYNCED := $(VENV)/.synced
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell command -v $(PYTHON))
export SAM_CLI_TELEMETRY := 0

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-fast lint format bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(SYNCED): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

setup: $(SYNCED) ## create .venv from uv.lock

# Upload -> rule -> process -> DynamoDB -> event -> rule -> email -> SES on a local emulator
# built from template.yaml; the sent email is written to out/emails/ (open the .html).
demo: $(SYNCED) ## the main job: the whole event-driven flow locally, email in out/emails/
	$(VENV)/bin/stori-pipeline demo $(DEMO_ARGS)

# pytest exits 5 when it collects no test; that is reported, not hidden as a pass or a crash.
test: $(SYNCED) ## run the whole test suite
	@$(VENV)/bin/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

lint: $(SYNCED) ## ruff + mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(SYNCED) ## apply ruff's formatter and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(SYNCED) ## the core benchmark (1M rows)
	$(VENV)/bin/python bench/bench_summarize.py

clean: ## remove environments and outputs
	rm -rf $(VENV) $(TOOLS) .aws-sam out test-artifacts bench/data .pytest_cache .mypy_cache .ruff_cache
