# detviz: `make run` starts the app on the built-in demo data; `make test` runs the whole suite.
# Both create .venv with the pinned dependencies first (again only when a requirements file changed).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
DEMO := data/demo/demo.json
ADDRESS ?= localhost
PORT ?= 8501
# Classroom (read-only) mode: READONLY=1 on, READONLY=0 off; empty: on unless ADDRESS is this machine.
READONLY ?= $(DETVIZ_READONLY)

.PHONY: run test bench lint demo-data demo-checkpoint lesson-checkpoints chromium clean

run: $(RUNTIME) $(DEMO)
	DETVIZ_READONLY=$(READONLY) $(PY) -m streamlit run app.py --server.address $(ADDRESS) --server.port $(PORT)

test: $(DEV) chromium
	$(PY) -m pytest

bench: $(DEV)
	@failed=""; for f in benchmarks/bench_*.py; do m=benchmarks.$$(basename $$f .py); echo "== $$m"; \
	  $(PY) -m $$m || failed="$$failed $$m"; done; \
	if [ -n "$$failed" ]; then echo "goals missed in:$$failed"; exit 1; fi

lint: $(DEV)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

demo-data: $(DEMO)

# Trains the shipped checkpoints on the CPU (about an hour each on 2 cores) and writes their model card.
demo-checkpoint: $(RUNTIME) $(DEMO)
	$(PY) -m detviz.train.demo_checkpoint --data data/demo --runs runs --out checkpoints

# Trains the lesson's ladder (one model per walkthrough stage, about an hour in all on 2 cores).
lesson-checkpoints: $(RUNTIME) $(DEMO)
	$(PY) -m detviz.train.demo_checkpoint --ladder --data data/demo --runs runs --out checkpoints

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUNTIME): requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(DEV): requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@ $(RUNTIME)

$(DEMO): | $(RUNTIME)
	$(PY) -m detviz.data.demo --out data/demo --overwrite

# The browser test drives Debian's chromium; install it when missing and we may (root).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is not installed and this is not root: the browser test will be skipped"; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
