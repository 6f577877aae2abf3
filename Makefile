# The README's two commands live here: `make demo` and `make test`.
# Both set everything up from a fresh clone (Python venv, npm tools) and are safe to re-run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# On this project's machines `torch==2.13.0` is a CPU build on local disk; elsewhere pip's default build.
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= demo

.PHONY: setup demo test lint clean images-check

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[all]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(PY) -m spaceport demo-scene --out $(DEMO_DIR)/scene
	$(PY) -m spaceport run $(DEMO_DIR)/scene/images --out $(DEMO_DIR)/out --preset fast
	@echo "report: $(DEMO_DIR)/out/report/index.html"
	@echo "3-D viewer: $(PY) -m spaceport view $(DEMO_DIR)/out   (serves it on http://127.0.0.1:8000)"

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q

# Build the three stage images from their Dockerfiles (buildah, no daemon; root, apt's buildah and
# debootstrap) and run sfm -> train -> compress in them on a real capture (containers/check.py).
images-check: setup
	$(PY) containers/check.py

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) node_modules cdk.out $(DEMO_DIR)
