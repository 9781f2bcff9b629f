PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench cluster cluster-stop clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/crash_and_resume.py

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/embedded_vs_langgraph.py
	$(BIN)/python bench/storage_growth.py
	$(BIN)/python bench/distributed.py

cluster: $(STAMP)
	$(BIN)/python -m scheduler.localcluster up

cluster-stop: $(STAMP)
	$(BIN)/python -m scheduler.localcluster down

clean:
	rm -rf $(VENV) build *.egg-info
