# smart_application platform. `make run` and `make test` install what they need themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS ?= never
export UV_LINK_MODE ?= copy
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PYTEST_ARGS ?=

.PHONY: help uv sync sysdeps infra run test test-deploy test-compose lint fmt bench token monitor env clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

# $(UV) first: under `uv run` (make called from a test), UV names the running uv while PATH
# leads to the workspace's pip-less python3. Debian's own python3 refuses `pip install --user`
# (PEP 668, externally managed): uv is one self-contained binary wheel, so the user site takes
# it with --break-system-packages without touching Debian's packages.
uv: ## install uv with pip when it is missing
	@$(UV) --version >/dev/null 2>&1 || command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || { \
	  echo "installing uv with pip"; python3 -m pip install --user --quiet uv \
	  || python3 -m pip install --user --quiet --break-system-packages uv || python3 -m pip install --quiet uv; }

# Compiled to bytecode ahead: where PYTHONDONTWRITEBYTECODE is set (as in our CI's environment)
# nothing caches it, and every process the tests start (APIs, gateways, workers: hundreds) compiled
# every module it imports again, 1.8 s a start instead of 0.75 s. Stale files are harmless: Python
# checks each against its source's mtime and compiles an edited module in memory.
PACKAGES := shared/shared gateway/gateway task-service/task_service scraping-service/scraping_service \
  notification-service/notification_service client/smartapp testkit/testkit
sync: uv ## install the workspace (locked versions) into .venv
	@$(UV) sync --frozen --all-packages --quiet --compile-bytecode
	@.venv/bin/python -m compileall -q -j 0 $(PACKAGES) >/dev/null

# Debian packages the checks need: promtool (Prometheus rules and configs), wrk (the gateway
# benchmark, whose quick run is part of the tests), chromium (the web console's browser tests,
# driven by Playwright through executable_path).
SYSDEPS ?= promtool:prometheus wrk:wrk chromium:chromium
sysdeps: ## install the Debian tools the tests need (as root), or say which
	@missing=""; for pair in $(SYSDEPS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "error: missing Debian packages:$$missing (sudo apt-get install -y$$missing)" >&2; exit 1; fi; fi

infra: ## start Redis and RabbitMQ when they are down (or say how to get them)
	@bash deploy/local/infra.sh

run: sync infra ## run every API, one worker per queue and beat in the foreground
	@$(UV) run --frozen python deploy/local/run.py

test: sync sysdeps infra ## the whole test suite against the real Redis, RabbitMQ and workers
	@$(UV) run --frozen pytest $(PYTEST_ARGS)

lint: sync ## ruff (lint + format check) and mypy
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen mypy shared/shared gateway/gateway task-service/task_service scraping-service/scraping_service notification-service/notification_service client/smartapp testkit/testkit

fmt: sync ## format the code
	@$(UV) run --frozen ruff check --fix .
	@$(UV) run --frozen ruff format .

bench: sync sysdeps infra ## benchmarks, each against a baseline run side by side
	@$(UV) run --frozen python bench/run.py $(SECTIONS)

SUB ?= alice
SCOPES ?= tasks scrape cache
TTL ?= 3600
# Signed with JWT_SECRET from the environment, else from $(ENV_FILE) (compose's .env) when it exists.
ENV_FILE ?= .env
token: sync ## mint a token: make token SUB=alice SCOPES="tasks scrape cache"
	@$(UV) run --frozen python -m gateway.token --sub "$(SUB)" --scopes "$(SCOPES)" --ttl "$(TTL)" --env-file "$(ENV_FILE)"

test-deploy: sync sysdeps ## compose, images, Kubernetes, Prometheus and Grafana checks only
	@$(UV) run --frozen pytest tests/deploy $(PYTEST_ARGS)

# Not part of `make test`: minutes long, and needs Docker (see the header of deploy/compose/check.py).
test-compose: sync ## build every image, run the stack with docker compose on a fresh copy, check it
	@$(UV) run --frozen python deploy/compose/check.py $(COMPOSE_CHECK_ARGS)

monitor: ## Prometheus on http://127.0.0.1:9090 scraping the `make run` stack
	@command -v prometheus >/dev/null || { echo "prometheus is not installed (Debian: apt-get install -y prometheus)"; exit 1; }
	@mkdir -p .run/prometheus
	prometheus --config.file=deploy/prometheus/prometheus.local.yml --storage.tsdb.path=.run/prometheus --web.listen-address=127.0.0.1:9090

env: ## write .env with fresh random secrets for docker compose
	@$(UV) run --frozen python deploy/init_env.py

clean: ## remove local state
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
