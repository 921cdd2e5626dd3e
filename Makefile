# shelfguard — the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= data/demo

.PHONY: install demo train test test-unit lint services-up services-down bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[ml,serve,dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install shelfguard with everything it needs

demo: install  ## simulate a retailer, run the feature flow, register + apply the models, check drift
	$(BIN)/shelfguard simulate --out $(DEMO_DIR) --seed 1 --stores 10 --skus 200 --days 30
	$(BIN)/shelfguard features --events $(DEMO_DIR)/events.jsonl --out $(DEMO_DIR)/features.parquet --dlq $(DEMO_DIR)/dlq.jsonl
	$(BIN)/shelfguard register-packaged
	$(BIN)/shelfguard score --events $(DEMO_DIR)/events.jsonl --out $(DEMO_DIR)/scores.csv
	$(BIN)/shelfguard drift --events $(DEMO_DIR)/events.jsonl --out $(DEMO_DIR)/drift
	@echo "top phantom risks:"; head -6 $(DEMO_DIR)/scores.csv | cut -c1-220
	@echo "MLflow UI: $(BIN)/mlflow ui --backend-store-uri sqlite:///$$PWD/mlflow.db  (models: phantom-inventory, stockout-risk @champion)"

train: install  ## retrain the packaged default models (seeded) and register them
	$(BIN)/shelfguard train --package

services-up:  ## install (Debian) and start the real services the integration tests use
	bash infra/install-system-deps.sh
	bash infra/kafka/kafka.sh start
	bash infra/postgres/pg.sh start

services-down:
	-bash infra/kafka/kafka.sh stop
	-bash infra/postgres/pg.sh stop

test: install  ## unit + integration tests against real services started here, then stopped
	$(MAKE) services-up
	set -o pipefail; status=0; \
	  $(BIN)/pytest -q -p no:cacheprovider || status=$$?; \
	  $(MAKE) services-down; exit $$status

test-unit: install
	$(BIN)/pytest -q -m "not integration"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy pipelines serving

bench: install
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) data .pytest_cache
