# Two commands do everything on a fresh machine:
#   make demo   create .venv if missing, then run the main job (the pipeline end to end on R8)
#   make test   create .venv if missing, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
GLOSS_DATA ?= $(abspath ../shared/data)
export GLOSS_DATA

.PHONY: venv demo test lint clean

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

lint: venv
	$(BIN)/ruff check pipeline graphs tests scripts

clean:
	rm -rf $(VENV) runs .pytest_cache
