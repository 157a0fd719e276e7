# Every target works on a fresh clone: the venv is created and the project installed on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test check lint sandbox bench demo dev validate clean focus-validator

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The whole suite on pytest-xdist workers: a module is the unit a worker takes (its tests in file order,
# its fixtures set up once), the slow tests go out first (tests/conftest.py). 2 cores: the suite is
# CPU-bound, so a few workers more than cores only fill the slow tests' waits (docs/testing.md).
# PYTEST_ARGS adds options, e.g. make test PYTEST_ARGS=--durations=15
TEST_WORKERS ?= 4
XDIST = --dist loadscope --no-loadscope-reorder
# Bytecode is cached even where the environment sets PYTHONDONTWRITEBYTECODE (this machine's does): without
# the cache every worker compiles the project and rewrites the tests' asserts again, ~5 s of CPU each run.
PYTEST = env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest
test: $(STAMP)
	$(PYTEST) -q -n $(TEST_WORKERS) $(XDIST) $(PYTEST_ARGS)

# The inner loop, under a minute: lint, then every test that runs inside the pytest process and takes
# under a few seconds (markers `external` and `slow` left out; docs/testing.md says what they hold).
CHECK_WORKERS ?= 3
check: lint
	$(PYTEST) -q -n $(CHECK_WORKERS) $(XDIST) -m 'not external and not slow' $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check nbpro_pipeline assets_defs tests bench
	$(BIN)/ruff format --check nbpro_pipeline assets_defs tests bench

sandbox: $(STAMP)
	$(BIN)/nbpro sandbox --port 8787 --state .nbpro/sandbox $(SANDBOX_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/sandbox_throughput.py

clean:
	rm -rf $(VENV) $(FOCUS_VENV) .nbpro .pytest_cache

# The FinOps Foundation's FOCUS validator, in its own venv: it needs Python >= 3.12 and numpy < 2, the
# project runs on 3.11. tests/costs/test_focus_validator.py uses it; .ci/run builds it before `make test`.
# 3.12 first: numpy < 2 has no wheels for 3.13. Override with FOCUS_PYTHON=/path/to/python3.12.
FOCUS_VENV := .venv-focus
FOCUS_PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python /root/.pyenv/versions/3.12*/bin/python \
	python3.13 $$HOME/.pyenv/versions/3.1[3-9]*/bin/python; do command -v $$p >/dev/null 2>&1 && \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; break; }; done)
$(FOCUS_VENV)/.installed:
	@test -n "$(FOCUS_PYTHON)" || { echo "focus-validator needs Python >= 3.12: install one or set FOCUS_PYTHON" >&2; exit 1; }
	$(FOCUS_PYTHON) -m venv $(FOCUS_VENV)
	$(FOCUS_VENV)/bin/python -m pip install -q 'focus-validator==2.2.1' 'numpy>=1.26,<2' 'pyarrow>=16,<22'
	touch $@
focus-validator: $(FOCUS_VENV)/.installed

# The whole pipeline on the local sandbox (no keys): prompt_table, six cells, both reports.
demo: $(STAMP)
	$(BIN)/python -m assets_defs.demo --home .nbpro

# The sandbox (realistic 17-60 s latency) plus the Dagster UI and daemon on http://127.0.0.1:3000 and the
# gallery server on :8788, on a storage root and instance of their own under $(DEV_HOME) (make demo's instant
# sandbox stays out of its latency figures), signing with the demo certificate. Sandbox keys unless
# <PROVIDER>_API_KEY is set; Ctrl-C stops all three. `dg dev -w` is Dagster 1.13's `dagster dev`.
DEV_HOME ?= .nbpro/dev
dev: $(STAMP)
	$(BIN)/python -m assets_defs.dev --home $(DEV_HOME) -- $(SANDBOX_ARGS)

validate: $(STAMP)
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs --use-active-venv
