# One place for the set-up: every target creates the virtual environment it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=25.1"
	$(BIN)/python -m pip install -q -e . --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sptycho simulate --sample bn-bamboo --energy 192 --polarization LH --spot 1e-6 \
		--overlap 0.9 --area 2e-6 --exposure 0.1 --frame-size 256 --seed 1 -o out/bn.cxi
	$(BIN)/sptycho recon out/bn.cxi -o out/bn_recon.h5 --algorithm "AP**100" --backend auto

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/simulate.py

clean:
	rm -rf $(VENV) out
