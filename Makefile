# Two commands: `make demo` (set up, then run the main job on sample data) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   ?= demo
LEADS  ?= 20000

.PHONY: setup demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/leadscore init $(DEMO) --force
	$(BIN)/leadscore sample-data --out $(DEMO)/data --leads $(LEADS)
	$(BIN)/leadscore validate --config $(DEMO)/leadscore.toml
	$(BIN)/leadscore build-training-set --config $(DEMO)/leadscore.toml --out $(DEMO)/output/training_set.parquet
	$(BIN)/leadscore grade --config $(DEMO)/leadscore.toml --out $(DEMO)/output/grades.csv --analyze
	$(BIN)/leadscore train --config $(DEMO)/leadscore.toml
	$(BIN)/leadscore predict --config $(DEMO)/leadscore.toml --out $(DEMO)/output/scores.csv
	$(BIN)/leadscore explain --config $(DEMO)/leadscore.toml --out $(DEMO)/output/report.html

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
