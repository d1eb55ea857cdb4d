# One place for the set-up: every target creates the virtual environment it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ARGS ?=
# Debian packages the tests need: the browser test drives Debian's Chromium (Playwright's
# own browser download fails here); the deployment tests start their own PostgreSQL and
# Redis servers (private port and folder each, removed after) from these packages.
TEST_PACKAGES := chromium postgresql redis-server

.PHONY: demo test lint bench bench-quick bench-peers system-packages clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=25.1"
	$(BIN)/python -m pip install -q -e . --group dev
	touch $(STAMP)

# Installs (with apt-get, as root or through sudo) whichever of TEST_PACKAGES is missing.
system-packages:
	@missing=; for p in $(TEST_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Simulated beamline, embedded Tiled, worker and live page: a BN stack; serves until Ctrl-C.
demo: $(STAMP)
	$(BIN)/sptycho demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: $(STAMP) system-packages
	$(BIN)/python -m pytest -q

# Every benchmark, each writing bench/results/<name>.json and printing its table
# (`make bench-quick` runs their short variants).
bench: $(STAMP)
	$(BIN)/python bench/simulate.py
	$(BIN)/python bench/recon.py
	$(BIN)/python bench/stream.py
	$(BIN)/python bench/acquire.py
	$(BIN)/python bench/web.py

# The short variants write to bench/results/quick/ (the full results stay as they are).
QUICK := bench/results/quick
bench-quick: $(STAMP)
	mkdir -p $(QUICK)
	$(BIN)/python bench/simulate.py --frames 20 --out $(QUICK)/simulate.json
	$(BIN)/python bench/recon.py --quick --repeat 1 --output $(QUICK)/recon.json
	$(BIN)/python bench/stream.py --frames 100 --size 64 --out $(QUICK)/stream.json
	$(BIN)/python bench/acquire.py --frames 10 --out $(QUICK)/acquire.json
	$(BIN)/python bench/web.py --clients 5 --updates 5 --out $(QUICK)/web.json

# pty-chi against this engine on the same data (bench/peers.py, bench/results/peers.json).
# pty-chi and torch live in their own environment, .venv-peers: torch's CPU build from
# PyTorch's index (PyPI's Linux torch pulls GBs of CUDA libraries); PyPI's torch when that
# index cannot be reached or leaves a torchvision that does not import (a CPU torch found
# elsewhere beside PyPI's CUDA torchvision).
PEERS := .venv-peers
PEERS_STAMP := $(PEERS)/.installed
PTYCHI ?= ptychi==2.2.0

$(PEERS_STAMP):
	$(PY) -m venv $(PEERS)
	-$(PEERS)/bin/python -m pip install -q --retries 2 --timeout 30 torch torchvision \
	  --index-url https://download.pytorch.org/whl/cpu
	$(PEERS)/bin/python -c "import torchvision" 2>/dev/null || { \
	  $(PEERS)/bin/python -m pip uninstall -q -y torch torchvision; \
	  $(PEERS)/bin/python -m pip install -q torch torchvision; }
	$(PEERS)/bin/python -m pip install -q "$(PTYCHI)"
	$(PEERS)/bin/python -c "import ptychi.api"
	touch $(PEERS_STAMP)

bench-peers: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python bench/peers.py --peers-python $(PEERS)/bin/python

clean:
	rm -rf $(VENV) out
