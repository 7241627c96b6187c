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
#: make <target> CLUSTER=1 runs the platform on the local cluster of 'make cluster-up'.
ifneq ($(CLUSTER),)
export PLATFORM_CLUSTER := 1
endif
#: The seed's event subscriptions (email, analytics, inventory on order.created),
#: for the targets that run the platform; set it empty to run without events.
PLATFORM_SUBSCRIPTIONS_FILE ?= config/subscriptions.toml
topology worker up down flower demo metrics alerts dlq-list dlq-replay delays events-backfill autoscale k8s-manifests: \
	export PLATFORM_SUBSCRIPTIONS_FILE := $(PLATFORM_SUBSCRIPTIONS_FILE)
#: Seconds per order-saga step under make (the demo's deadline case waits this long; default 30).
PLATFORM_SAGA_STEP_DEADLINE ?= 5
up worker demo: export PLATFORM_SAGA_STEP_DEADLINE := $(PLATFORM_SAGA_STEP_DEADLINE)

.PHONY: help setup broker topology worker up down flower demo test lint fmt logs dlq-list dlq-replay \
	delays metrics alerts events-backfill autoscale autoscale-check k8s-manifests saga-chaos \
	bench bench-quick clean \
	cluster-up cluster-down cluster-status cluster-kill cluster-stop cluster-start cluster-freeze \
	cluster-thaw cluster-partition cluster-heal cluster-leader chaos

help: ## List the targets
	@echo "usage: make <target>    (quick start: make demo, make test)"
	@echo
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-15s %s\n", $$1, $$2}'

setup: $(INSTALLED) ## Create .venv and install the project with its dev and benchmark tools
	@:

$(INSTALLED): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
		echo "setup: could not create $(VENV); on Debian/Ubuntu: sudo apt-get install -y python3-venv" >&2; \
		exit 1; }
	@# The venv's bundled pip and setuptools are old releases with published advisories
	@# (pip before 23.3, setuptools before 78.1.1): make lint's audit would flag them.
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip setuptools
	$(PY) -m pip install --disable-pip-version-check -q -e ".[dev,bench,redis]"
	@touch $@

broker: setup ## Make sure RabbitMQ and its management API answer (start or explain how)
	@$(SCRIPTS)/broker.sh

topology: broker ## Declare every exchange and queue (workers also do it at start)
	$(CELERY) topology declare

worker: broker ## Run one worker on all queues in the foreground
	$(CELERY) worker -l info

#: make demo BURST=1: the tour, then a burst of tasks the autoscaler absorbs (tasks/demo/burst.py).
BURST ?= 0
#: make up AUTOSCALE=1: the autoscaler (make autoscale) runs the workers instead of one per queue.
#: BURST=1 implies it, with a short cooldown and window so the pool shrinks back within the tour.
ifeq ($(BURST),1)
AUTOSCALE ?= 1
export PLATFORM_SCALE_COOLDOWN ?= 3
export PLATFORM_SCALE_WINDOW ?= 10
else
AUTOSCALE ?= 0
endif
up: export AUTOSCALE := $(AUTOSCALE)
up: broker ## Start a worker per work queue (AUTOSCALE=1: the autoscaler) and Flower in the background (.run/)
	@$(SCRIPTS)/up.sh

down: setup ## Stop what 'make up' started
	@$(SCRIPTS)/down.sh

flower: broker ## Run Flower in the foreground (FLOWER_ADDRESS, FLOWER_PORT, FLOWER_BASIC_AUTH)
	$(PY) -m workers.ops.flower

demo: up ## Start everything and run sample work: successes, retries, dead letters (BURST=1: and a burst the autoscaler absorbs)
	$(PY) -m tasks.demo
	@if [ "$(BURST)" = 1 ]; then echo "$(PY) -m tasks.demo.burst"; $(PY) -m tasks.demo.burst; fi

test: broker ## Run the whole test suite (unit, integration, e2e, bench-quick)
	@echo "$(PY) -m pytest tests/ $(PYTEST_ARGS)"
	@status=0; $(PY) -m pytest tests/ $(PYTEST_ARGS) || status=$$?; \
	if [ $$status = 5 ]; then echo "test: pytest collected no tests (exit 5); that is a failure" >&2; fi; \
	exit $$status

#: make lint AUDIT=0 leaves out the vulnerability audit (it needs PyPI over the network).
AUDIT ?= 1
lint: setup ## ruff check, ruff format --check, mypy (config, workers), import layers, event schema check, pip-audit
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(CELERY) pubsub schema-check
	@if [ "$(AUDIT)" != 0 ]; then echo "$(PY) $(SCRIPTS)/audit.py"; $(PY) $(SCRIPTS)/audit.py; fi

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

autoscale: broker ## Scale local workers on queue depth (foreground): make autoscale ARGS="--dry-run --queue orders"
	$(CELERY) scale run $(ARGS)

autoscale-check: broker ## The autoscaler's long tests: bursts of 5,000, 5,000 parked, a poison storm, a sawtooth
	AUTOSCALE_FULL=1 $(PY) -m pytest tests/integration/test_autoscale.py $(PYTEST_ARGS)

metrics: broker ## Serve Prometheus metrics on PLATFORM_METRICS_PORT (foreground)
	$(PY) -m workers.ops.metrics

alerts: broker ## Run the webhook alert checks (foreground; PLATFORM_ALERT_WEBHOOK_URL)
	$(PY) -m workers.ops.alerts

k8s-manifests: setup ## Regenerate compose/k8s/: worker Deployments, KEDA ScaledObjects, the exporter
	$(CELERY) scale manifests --out compose/k8s

#: Sagas of `make saga-chaos` (make test runs a short form of 45).
SAGA_CHAOS_SAGAS ?= 1000
saga-chaos: broker ## The order saga while workers are SIGKILLed at random: SAGA_CHAOS_SAGAS (1,000) sagas, then the invariants
	SAGA_CHAOS_SAGAS=$(SAGA_CHAOS_SAGAS) $(PY) -m pytest tests/integration/test_saga_chaos.py -q -s $(PYTEST_ARGS)

bench: setup ## Run the benchmarks (results/bench-<time>/)
	$(PY) -m tests.bench --out results/bench-$$(date +%Y%m%d-%H%M%S)

bench-quick: setup ## Run a short benchmark (results/bench-quick/)
	$(PY) -m tests.bench --quick --out results/bench-quick

# ---- the local 3-node cluster (workers/ops/cluster; README "Local cluster") ----
CLUSTER_CLI := $(PY) -m workers.ops.cluster

cluster-up: setup ## Start a local 3-node RabbitMQ cluster (AMQP 5681-5683) beside the default broker
	@$(CLUSTER_CLI) up

cluster-down: setup ## Stop the local cluster: no process, port or folder left (safe to run twice)
	@$(CLUSTER_CLI) down

cluster-status: setup ## Exit 0 only if all 3 nodes run, are clustered and every quorum queue has 3 members
	@$(CLUSTER_CLI) status

cluster-kill: setup ## SIGKILL one node of the local cluster: make cluster-kill NODE=2
	@$(CLUSTER_CLI) kill $(NODE)

cluster-stop: setup ## Stop one node gracefully: make cluster-stop NODE=2
	@$(CLUSTER_CLI) stop $(NODE)

cluster-start: setup ## Start a stopped or killed node again: make cluster-start NODE=2
	@$(CLUSTER_CLI) start $(NODE)

cluster-freeze: setup ## SIGSTOP one node (it hangs, its sockets stay open): make cluster-freeze NODE=2
	@$(CLUSTER_CLI) freeze $(NODE)

cluster-thaw: setup ## SIGCONT a frozen node: make cluster-thaw NODE=2
	@$(CLUSTER_CLI) thaw $(NODE)

cluster-partition: setup ## Cut one node off from its peers (root: cgroups + nftables): make cluster-partition NODE=3
	@$(CLUSTER_CLI) partition $(NODE)

cluster-heal: setup ## Undo cluster-partition (safe to run twice; cluster-down heals too)
	@$(CLUSTER_CLI) heal

cluster-leader: setup ## Which node leads a quorum queue: make cluster-leader QUEUE=orders
	@$(CLUSTER_CLI) leader $(QUEUE)

chaos: setup ## The chaos suite, long form (tests/chaos; ledgers in results/chaos/)
	CHAOS_LONG=1 $(PY) -m pytest tests/chaos $(PYTEST_ARGS)

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
