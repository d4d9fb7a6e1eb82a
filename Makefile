# Two commands: `make demo` (set up, then run the main job on sample data) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   ?= demo
LEADS  ?= 20000
# closing the loop: a model trained on the data known at PAST_TRAIN scores at two later dates, each at least one
# 90-day horizon before the sample's end (2025-12-31), so that `monitor` sees their outcomes
PAST_TRAIN ?= 2025-06-30
PAST_RUN_1 ?= 2025-07-01
PAST_RUN_2 ?= 2025-09-01

.PHONY: setup demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# The demo starts clean every time (a second run would otherwise register more versions in the same store); it only
# deletes a folder that an earlier `make demo` made (marked by .leadscore-demo), never one of yours.
demo: setup
	@if [ -e "$(DEMO)" ] && [ ! -f "$(DEMO)/.leadscore-demo" ]; then \
	  echo "error: $(DEMO) exists and was not made by make demo; choose another folder: make demo DEMO=path" >&2; \
	  exit 2; fi
	@if [ -d "$(DEMO)" ]; then echo "make demo: removing the previous demo in $(DEMO)/ (data, MLflow store, outputs) to start clean"; fi
	rm -rf "$(DEMO)"
	mkdir -p "$(DEMO)" && touch "$(DEMO)/.leadscore-demo"
	$(BIN)/leadscore init $(DEMO)
	$(BIN)/leadscore sample-data --out $(DEMO)/data --leads $(LEADS)
	$(BIN)/leadscore validate --config $(DEMO)/leadscore.toml
	$(BIN)/leadscore build-training-set --config $(DEMO)/leadscore.toml --out $(DEMO)/output/training_set.parquet
	$(BIN)/leadscore grade --config $(DEMO)/leadscore.toml --out $(DEMO)/output/grades.csv --analyze
	$(BIN)/leadscore train --config $(DEMO)/leadscore.toml --as-of $(PAST_TRAIN) --promote
	$(BIN)/leadscore predict --config $(DEMO)/leadscore.toml --as-of $(PAST_RUN_1) --out $(DEMO)/output/scores_$(PAST_RUN_1).csv
	$(BIN)/leadscore predict --config $(DEMO)/leadscore.toml --as-of $(PAST_RUN_2) --out $(DEMO)/output/scores_$(PAST_RUN_2).csv
	$(BIN)/leadscore train --config $(DEMO)/leadscore.toml
	$(BIN)/leadscore predict --config $(DEMO)/leadscore.toml --out $(DEMO)/output/scores.csv
	$(BIN)/leadscore train --config $(DEMO)/leadscore.toml --level account
	$(BIN)/leadscore predict --config $(DEMO)/leadscore.toml --level account --out $(DEMO)/output/accounts.csv
	$(BIN)/leadscore explain --config $(DEMO)/leadscore.toml --out $(DEMO)/output/report.html
	$(BIN)/leadscore monitor --config $(DEMO)/leadscore.toml --out $(DEMO)/output/monitor.html || [ $$? -eq 3 ]

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
