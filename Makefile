# Two commands do everything on a fresh machine:
#   make demo   create .venv if missing, then run the main job (the pipeline end to end on R8)
#   make test   create .venv if missing, then run the test suite
#   make docs   install the docs extra into .venv, then build the documentation site (site/) in strict mode
#   make gpu-suite       the GPU suite on a CUDA machine, nothing installed (SUITE_ARGS="--budget-s 600")
#   make gpu-suite-tiny  the same code path on a CPU, FAISS hidden (CI runs it)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
GLOSS_DATA ?= $(abspath ../shared/data)
export GLOSS_DATA

.PHONY: venv demo test lint docs clean gpu-suite gpu-suite-tiny

$(BIN)/gloss: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(BIN)/gloss

venv: $(BIN)/gloss

demo: venv
	$(BIN)/gloss run --run-dir runs/demo

test: venv
	$(BIN)/python -m pytest -q

gpu-suite:
	bash scripts/gpu_suite.sh $(SUITE_ARGS)

gpu-suite-tiny: venv
	out=$$(mktemp -d) && PYTHON=$(BIN)/python bash scripts/gpu_suite.sh --tiny --out $$out $(SUITE_ARGS)

$(VENV)/.docs-installed: setup.cfg pyproject.toml | venv
	$(BIN)/python -m pip install -q -e '.[dev,docs]'
	touch $@

docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

lint: venv
	$(BIN)/ruff check pipeline graphs tests scripts

clean:
	rm -rf $(VENV) runs site .pytest_cache
