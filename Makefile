# Two entry points: `make demo` (the main job) and `make test`. Both create or reuse .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck unit reliability bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check airflow_fc_async tests example_dags benchmarks
	$(BIN)/ruff format --check airflow_fc_async tests example_dags benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy airflow_fc_async

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

# Long reliability runs: everything in tests/reliability_long/ (an explicit path is collected despite the
# default --ignore), then every test marked slow anywhere (exit 5 = none collected is fine).
reliability: $(STAMP)
	$(BIN)/python -m pytest -q tests/reliability_long -m ''
	$(BIN)/python -m pytest -q tests -m slow || test $$? -eq 5

# Full benchmark runs (several minutes; figures side by side with a baseline in the same run):
# results in benchmarks/results/*.json (git-ignored). The test run only smokes them (tests/test_bench_smoke.py).
bench: $(STAMP)
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[bench]'
	$(BIN)/python -m benchmarks.p1_trigger_fleet
	$(BIN)/python -m benchmarks.p2_client_cost
	$(BIN)/python -m benchmarks.p3_parse_cost
	$(BIN)/python -m benchmarks.p4_shared_queue

# The Airflow version matrix (2.11, 3.0, 3.3): one venv each under .compat/, unit + e2e tests in each (~10 min).
# LINES="3.0" runs a subset; RELOCK=1 re-resolves tests/compat/pins-*.txt from PyPI first.
test-compat: $(STAMP)
	tests/compat/run.sh $(LINES)

demo: $(STAMP)
	$(BIN)/python example_dags/run_demo.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
