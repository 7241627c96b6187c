# The operator's front door. Humans and CI (.ci/run) call the same targets.
# Settings come from the environment (see config/settings.py), e.g.
#   CELERY_BROKER_URL=amqp://... FLOWER_PORT=5556 make up

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

#: The interpreter that creates the virtualenv (system Python 3.11+ with venv).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CELERY := $(PY) -m celery -A config
SCRIPTS := compose/scripts
#: Touched after a successful install; redone when pyproject.toml changes.
INSTALLED := $(VENV)/.installed
#: Extra arguments for pytest, e.g. make test PYTEST_ARGS="-k flower -x".
PYTEST_ARGS ?=
export PY
#: The seed's event subscriptions (email, analytics, inventory on order.created),
#: for the targets that run the platform; set it empty to run without events.
PLATFORM_SUBSCRIPTIONS_FILE ?= config/subscriptions.toml
topology worker up down flower demo metrics alerts dlq-list dlq-replay delays events-backfill: \
	export PLATFORM_SUBSCRIPTIONS_FILE := $(PLATFORM_SUBSCRIPTIONS_FILE)

.PHONY: help setup broker topology worker up down flower demo test lint fmt logs dlq-list dlq-replay \
	delays metrics alerts events-backfill \
	bench bench-quick clean

help: ## List the targets
	@echo "usage: make <target>    (quick start: make demo, make test)"
	@echo
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

setup: $(INSTALLED) ## Create .venv and install the project with its dev and benchmark tools
	@:

$(INSTALLED): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
		echo "setup: could not create $(VENV); on Debian/Ubuntu: sudo apt-get install -y python3-venv" >&2; \
		exit 1; }
	$(PY) -m pip install --disable-pip-version-check -q -e ".[dev,bench,redis]"
	@touch $@

broker: setup ## Make sure RabbitMQ and its management API answer (start or explain how)
	@$(SCRIPTS)/broker.sh

topology: broker ## Declare every exchange and queue (workers also do it at start)
	$(CELERY) topology declare

worker: broker ## Run one worker on all queues in the foreground
	$(CELERY) worker -l info

up: broker ## Start a worker per work queue and Flower in the background (.run/)
	@$(SCRIPTS)/up.sh

down: setup ## Stop what 'make up' started
	@$(SCRIPTS)/down.sh

flower: broker ## Run Flower in the foreground (FLOWER_ADDRESS, FLOWER_PORT, FLOWER_BASIC_AUTH)
	$(PY) -m workers.ops.flower

demo: up ## Start everything and run sample work: successes, retries, dead letters
	$(PY) -m tasks.demo

test: broker ## Run the whole test suite (unit, integration, e2e, bench-quick)
	@echo "$(PY) -m pytest tests/ $(PYTEST_ARGS)"
	@status=0; $(PY) -m pytest tests/ $(PYTEST_ARGS) || status=$$?; \
	if [ $$status = 5 ]; then echo "test: pytest collected no tests (exit 5); that is a failure" >&2; fi; \
	exit $$status

lint: setup ## ruff check, ruff format --check, mypy (config, workers), import layers, event schema check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(CELERY) pubsub schema-check

fmt: setup ## Format the code and apply ruff's safe fixes
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

logs: setup ## Follow the logs of 'make up'
	@run_dir=$$($(PY) $(SCRIPTS)/probe.py setting run_dir); \
	ls "$$run_dir"/*.log >/dev/null 2>&1 || { echo "logs: no logs in $$run_dir (run make up)"; exit 1; }; \
	exec tail -n 20 -F "$$run_dir"/*.log

dlq-list: broker ## Every queue's DLQ depth, oldest dead letter and retry depths
	$(CELERY) dlq list

dlq-replay: broker ## Replay dead letters: make dlq-replay QUEUE=orders ARGS="--error-class transient --dry-run"
	@test -n "$(QUEUE)" || { echo "dlq-replay: say which queue, e.g. make dlq-replay QUEUE=orders" >&2; exit 2; }
	$(CELERY) dlq replay $(QUEUE) $(ARGS)

delays: broker ## Delayed tasks per delay level and the next due: make delays ARGS="peek --limit 20"
	$(CELERY) delays $(or $(ARGS),stats)

events-backfill: broker ## Backfill a new subscriber from the event log: make events-backfill SERVICE=fraud
	@test -n "$(SERVICE)" || { echo "events-backfill: say which service, e.g. SERVICE=fraud" >&2; exit 2; }
	$(CELERY) pubsub backfill $(SERVICE) --from-start

metrics: broker ## Serve Prometheus metrics on PLATFORM_METRICS_PORT (foreground)
	$(PY) -m workers.ops.metrics

alerts: broker ## Run the webhook alert checks (foreground; PLATFORM_ALERT_WEBHOOK_URL)
	$(PY) -m workers.ops.alerts

bench: setup ## Run the benchmarks (results/bench-<time>/)
	$(PY) -m tests.bench --out results/bench-$$(date +%Y%m%d-%H%M%S)

bench-quick: setup ## Run a short benchmark (results/bench-quick/)
	$(PY) -m tests.bench --quick --out results/bench-quick

# -- worker layout (issue 16) --
.PHONY: test-layout-long test-layout
test-layout: broker ## The lifecycle, recovery and results tests against the default layout's worker group
	TEST_WORKER_LAYOUT=1 $(PY) -m pytest tests/integration/test_lifecycle.py tests/integration/test_recovery.py \
		tests/integration/test_results.py $(PYTEST_ARGS)

test-layout-long: broker ## The worker-layout tests with a 40-second task (heartbeats while it runs)
	TEST_LONG_TASK_SECONDS=40 $(PY) -m pytest tests/integration/test_worker_layout.py $(PYTEST_ARGS)

clean: ## Remove caches and build files (keeps .venv, results/ and the run folder)
	rm -rf .pytest_cache .ruff_cache .mypy_cache build
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
