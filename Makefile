# smart_application platform. `make run` and `make test` install what they need themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS ?= never
export UV_LINK_MODE ?= copy
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PYTEST_ARGS ?=

.PHONY: help uv sync infra run test lint fmt bench token monitor clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

uv: ## install uv with pip when it is missing
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || { \
	  echo "installing uv with pip"; python3 -m pip install --user --quiet uv || python3 -m pip install --quiet uv; }

sync: uv ## install the workspace (locked versions) into .venv
	@$(UV) sync --frozen --all-packages --quiet

infra: ## start Redis and RabbitMQ when they are down (or say how to get them)
	@bash deploy/local/infra.sh

run: sync infra ## run every API, one worker per queue and beat in the foreground
	@$(UV) run --frozen python deploy/local/run.py

test: sync infra ## the whole test suite against the real Redis, RabbitMQ and workers
	@$(UV) run --frozen pytest $(PYTEST_ARGS)

lint: sync ## ruff (lint + format check) and mypy
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen mypy shared/shared gateway/gateway task-service/task_service scraping-service/scraping_service notification-service/notification_service

fmt: sync ## format the code
	@$(UV) run --frozen ruff check --fix .
	@$(UV) run --frozen ruff format .

bench: sync infra ## benchmarks, each against a baseline run side by side
	@$(UV) run --frozen python bench/run.py

SUB ?= alice
SCOPES ?= tasks scrape cache
TTL ?= 3600
token: sync ## mint a token: make token SUB=alice SCOPES="tasks scrape cache"
	@$(UV) run --frozen python -m gateway.token --sub "$(SUB)" --scopes "$(SCOPES)" --ttl "$(TTL)"

clean: ## remove local state
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
