# Every target works on a fresh clone: the venv is created and the project installed on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint sandbox bench demo dev validate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check nbpro_pipeline assets_defs tests bench

sandbox: $(STAMP)
	$(BIN)/nbpro sandbox --port 8787 --state .nbpro/sandbox

bench: $(STAMP)
	$(BIN)/python bench/sandbox_throughput.py

clean:
	rm -rf $(VENV) .nbpro .pytest_cache

# The whole pipeline on the local sandbox (no keys): prompt_table, six cells, both reports.
demo: $(STAMP)
	$(BIN)/python -m assets_defs.demo --home .nbpro

# The sandbox plus the Dagster UI and daemon on the local instance (.nbpro/dagster_home), so backfills
# launched from the UI run. Sandbox keys only; Ctrl-C stops both.
DEV_ENV = DAGSTER_HOME=$(CURDIR)/.nbpro/dagster_home NBPRO_STORAGE_ROOT=$(CURDIR)/.nbpro/storage \
	RIVYA_API_KEY=$${RIVYA_API_KEY:-rvya_sk_sandbox_demo_key} ODIROUTER_API_KEY=$${ODIROUTER_API_KEY:-odr_sandbox_demo_key}
dev: $(STAMP)
	mkdir -p .nbpro/dagster_home && cp dagster.yaml .nbpro/dagster_home/dagster.yaml
	$(BIN)/nbpro sandbox --port 8787 --state .nbpro/sandbox --latency realistic $(SANDBOX_ARGS) & SANDBOX=$$!; \
	trap 'kill $$SANDBOX' EXIT INT TERM; \
	$(DEV_ENV) $(BIN)/dagster dev -w workspace.yaml

validate: $(STAMP)
	$(BIN)/dagster definitions validate -w workspace.yaml
