# Two entry points: `make demo` (the main job) and `make test`. Both create or reuse .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo ui test lint typecheck unit reliability test-deployment test-browser bench clean test-wheel test-compat

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[test,messaging]'
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

# The deployment tier: PostgreSQL + CeleryExecutor/Redis + 2 Celery workers + 2 triggerers, real processes
# (tests/deployment/; needs the Debian packages postgresql and redis-server, which .ci/run installs).
test-deployment: $(STAMP)
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[test,deployment]'
	$(BIN)/python -m pytest -q -s -p no:cacheprovider --timeout 1200 tests/deployment -m ''

# The UI plugin in headless Chromium against a real Airflow (tests/browser/; screenshots in tests/browser/results/).
# Installs Debian's chromium and chromium-driver when missing (as root: CI) and selenium (the [browser] extra).
test-browser: $(STAMP)
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
	  test "$$(id -u)" = 0 || { echo "test-browser needs chromium and chromium-driver: sudo apt-get install chromium chromium-driver"; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[test,messaging,browser]'
	$(BIN)/python -m pytest -q -s -p no:cacheprovider --timeout 900 tests/browser -m ''

# Full benchmark runs (several minutes; figures side by side with a baseline in the same run):
# results in benchmarks/results/*.json (git-ignored). The test run only smokes them (tests/test_bench_smoke.py).
bench: $(STAMP)
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[bench]'
	$(BIN)/python -m benchmarks.p1_trigger_fleet
	$(BIN)/python -m benchmarks.p1_push
	$(BIN)/python -m benchmarks.p2_client_cost
	$(BIN)/python -m benchmarks.p3_parse_cost
	$(BIN)/python -m benchmarks.p4_shared_queue
	$(BIN)/python -m benchmarks.p5_process_fleet

# The Airflow version matrix (2.11, 3.0, 3.3): one venv each under .compat/, unit + e2e tests in each (~10 min).
# LINES="3.0" runs a subset; RELOCK=1 re-resolves tests/compat/pins-*.txt from PyPI first.
test-compat: $(STAMP)
	tests/compat/run.sh $(LINES)

# The built wheel (not the editable tree) in a fresh venv: providers list, every module imports, fc-emulator,
# one example DAG end to end (~1-2 min).
test-wheel: $(STAMP)
	tests/wheel/run.sh

demo: $(STAMP)
	$(BIN)/python example_dags/run_demo.py

# The example DAGs in a real Airflow UI (api-server, scheduler, dag-processor, triggerer on 127.0.0.1) against
# fc-emulator; prints the URL and the login, Ctrl-C stops everything (about 2-5 minutes to start on 2 busy cores).
ui: $(STAMP)
	$(BIN)/python example_dags/run_ui.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
