# shelfguard — the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= data/demo

.PHONY: install demo demo-kafka demo-batch train test test-unit lint services-up services-down bench chaos clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[ml,serve,dev,fast]'
	touch $(STAMP)

# The ledger/feature core compiled in place with mypyc (pipelines/native.py); rebuilt when they change.
CORE_SRC := pipelines/keys.py pipelines/ledger.py pipelines/features.py pipelines/native.py
CORE_STAMP := pipelines/_core.json

$(CORE_STAMP): $(STAMP) $(CORE_SRC)
	SHELFGUARD_PURE_PYTHON=1 $(BIN)/python -c 'import pipelines.native as n; n.main(["build"])'

# The dataflow's ledger step in Rust (pipelines/native_book.py, crate pipelines/rust_book); rebuilt
# when the crate changes. Without cargo the flow runs the Python Book (slower, same results).
NATIVE_SRC := pipelines/rust_book/Cargo.toml pipelines/rust_book/Cargo.lock pipelines/rust_book/src/lib.rs pipelines/rust_book/src/parse.rs
NATIVE_STAMP := pipelines/_native_book.json

$(NATIVE_STAMP): $(STAMP) $(NATIVE_SRC) pipelines/native_book.py
	@if command -v cargo >/dev/null || test -x $$HOME/.cargo/bin/cargo; then \
	  $(BIN)/python -m pipelines.native_book build || \
	    echo "warning: the Rust build failed: the feature flow runs its Python parse and ledger step"; \
	else echo "cargo not found: the feature flow runs its Python parse and ledger step (see README)"; fi

install: $(STAMP) $(CORE_STAMP) $(NATIVE_STAMP)  ## create .venv, install shelfguard with everything it needs, compile its core

demo: install  ## the whole loop, live: simulate, register models, UI + API, score an accelerated replay (Ctrl-C stops)
	$(BIN)/shelfguard demo

demo-kafka: install  ## the same over the local Kafka broker (started here; `make services-down` stops it)
	bash infra/kafka/kafka.sh start
	$(BIN)/shelfguard demo --kafka

demo-batch: install  ## the batch path: simulate, feature flow, register + apply the models, check drift
	$(BIN)/shelfguard simulate --out $(DEMO_DIR) --seed 1 --stores 10 --skus 200 --days 30
	$(BIN)/shelfguard features --events $(DEMO_DIR)/events.jsonl --out $(DEMO_DIR)/features.parquet --dlq $(DEMO_DIR)/dlq.jsonl
	$(BIN)/shelfguard register-packaged
	$(BIN)/shelfguard score --events $(DEMO_DIR)/events.jsonl --out $(DEMO_DIR)/scores.csv
	$(BIN)/shelfguard drift --events $(DEMO_DIR)/events.jsonl --out $(DEMO_DIR)/drift

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
	  SHELFGUARD_EXPECT_COMPILED=1 $(BIN)/pytest -q -p no:cacheprovider || status=$$?; \
	  $(MAKE) services-down; exit $$status

test-unit: install
	SHELFGUARD_EXPECT_COMPILED=1 $(BIN)/pytest -q -m "not integration"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy pipelines serving

bench: install  ## benchmarks; starts the broker and PostgreSQL they need, stops them after
	$(MAKE) services-up
	set -o pipefail; status=0; \
	  $(BIN)/python -m bench.run_all || status=$$?; \
	  $(MAKE) services-down; exit $$status

chaos: install  ## fault tests (kills, restarts, floods); figures -> bench/results/chaos.json
	$(MAKE) services-up
	set -o pipefail; status=0; \
	  SHELFGUARD_CHAOS_REPORT=bench/results/chaos.json $(BIN)/pytest -m chaos -rP -p no:cacheprovider || status=$$?; \
	  $(MAKE) services-down; exit $$status
	$(BIN)/python -m bench.chaos_report

clean:
	rm -rf $(VENV) data .pytest_cache pipelines/*.so pipelines/_core.json
