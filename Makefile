# Two commands a new user needs:  `make demo`  and  `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint clean

$(BIN)/plantstage: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/plantstage

demo: setup
	$(BIN)/plantstage demo

test: setup
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check src tests examples benchmarks

clean:
	rm -rf $(VENV) .plantstage examples/sample-plant/.plantstage
