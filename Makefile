# Set-up is part of every target: a fresh machine needs only python3 (>= 3.10) and this Makefile.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned here (a CPU build that installs from local disk in ~30 s); the package itself accepts torch>=2.4.
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[test]" "$(TORCH_PIN)"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/focalstack demo --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q tests

bench: $(STAMP)
	$(BIN)/focalstack bench render

clean:
	rm -rf $(VENV) demo_out
