PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo demo-embedded test lint bench cluster cluster-stop clean fuzz

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench,redis,server]'
	touch $(STAMP)

venv: $(STAMP)

# The distributed demo: a private Redis, two Celery node workers and a scheduler; one worker
# is SIGKILLed mid-node. FLOWER=1 also starts Flower and keeps it all up until Enter.
demo: $(STAMP)
	$(BIN)/python examples/distributed_demo.py $(if $(FLOWER),--flower)

# The in-process demo: SQLite checkpoints, a process SIGKILLed and resumed by another.
demo-embedded: $(STAMP)
	$(BIN)/python examples/crash_and_resume.py

# The Node.js producer example (tests/test_any_language.py runs it), from its lock file.
NODE_EXAMPLE := examples/producers/node
NODE_STAMP := $(NODE_EXAMPLE)/node_modules/.installed

$(NODE_STAMP): $(NODE_EXAMPLE)/package.json $(NODE_EXAMPLE)/package-lock.json
	npm ci --prefix $(NODE_EXAMPLE) --no-audit --no-fund
	touch $@

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The long fuzz (tests/fuzz_long.py): serde decoder and checkpoint loaders, FUZZ_SECONDS in
# all; coverage-guided with atheris when it is installed (pip install atheris).
FUZZ_SECONDS ?= 300

fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz_long --seconds $(FUZZ_SECONDS)

# The long fault storm (tests/faults/storm.py): 300 runs on real workers, schedulers and a
# Redis of its own while they are SIGKILLed, paused and restarted; prints one summary line.
.PHONY: faults
faults: $(STAMP)
	$(BIN)/python -m tests.faults.storm --runs 300 --minutes 8

bench: $(STAMP)
	$(BIN)/python bench/embedded_vs_langgraph.py
	$(BIN)/python bench/storage_growth.py
	$(BIN)/python bench/distributed.py
	$(BIN)/python bench/store_cost.py

cluster: $(STAMP)
	$(BIN)/python -m scheduler.localcluster up

cluster-stop: $(STAMP)
	$(BIN)/python -m scheduler.localcluster down

clean:
	rm -rf $(VENV) build *.egg-info
