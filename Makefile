# Every target works on a fresh clone: the venv is created and the project installed on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint sandbox bench demo clean

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

demo: $(STAMP)
	$(BIN)/python examples/client_quickstart.py --out .nbpro/quickstart
